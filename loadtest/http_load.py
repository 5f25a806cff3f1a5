"""The ``http`` phase's read load, run as its own process so it shares no event loop with the harness.

The harness starts it early (the imports take a moment), then writes one JSON line on stdin when
the load is to begin::

    {"urls": ["http://127.0.0.1:6067"], "viewers": ["u0000012", ...], "concurrency": 4,
     "seconds": 25.0, "max_requests": 20000, "seed": 7}

``concurrency`` clients share one keep-alive session (a connection each) and each issues
``GET /viewers/{viewer}/recommendations`` for random ``viewers``, one request after another
(or, with ``"rate"``, paced so that all clients together make that many a second),
until ``seconds`` have passed or ``max_requests`` were issued, whichever comes first; a request
gets at most :data:`REQUEST_TIMEOUT_S`. The bearer token comes from the environment
(``LOADTEST_TOKEN``), not the command line. One JSON line goes to stdout::

    {"elapsed_s": 25.0, "requests": [[start_s, ms, status], ...]}

``start_s`` counts from the first request, ``status`` 0 is a request that got no answer (a
connection error or a timeout). Only loopback addresses are accepted.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

__all__ = ["REQUEST_TIMEOUT_S", "TOKEN_ENV", "load"]

TOKEN_ENV = "LOADTEST_TOKEN"
#: Longest one request may take (connect included): the load ends at most this long after its time.
REQUEST_TIMEOUT_S = 5.0
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


async def load(
    urls: list[str],
    token: str,
    viewers: list[str],
    concurrency: int,
    seconds: float,
    max_requests: int,
    seed: int = 7,
    rate: float | None = None,
) -> dict[str, Any]:
    """Read ``viewers``' lists from ``urls`` (client ``i`` asks ``urls[i % len(urls)]``); see the module.

    ``rate``: requests per second in all, shared by the clients (None: each as fast as answers come).
    """
    if not urls or not viewers or concurrency < 1:
        raise ValueError("expected some urls, some viewers and a concurrency of 1 or more")
    for url in urls:
        if urlsplit(url).hostname not in _LOOPBACK:
            raise ValueError(f"{url}: the load test reads from loopback addresses only")
    rng = random.Random(seed)
    records: list[tuple[float, float, int]] = []
    issued = 0
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    deadline = t0 + seconds
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def client(base: str, n: int) -> None:
            nonlocal issued
            gap = concurrency / rate if rate else 0.0
            due = t0 + n * gap / concurrency  # the clients take turns
            while issued < max_requests and time.perf_counter() < deadline:
                if gap:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += gap
                    if time.perf_counter() >= deadline:
                        break
                issued += 1
                viewer = quote(viewers[rng.randrange(len(viewers))], safe="")
                start = time.perf_counter()
                try:
                    async with session.get(f"{base}/viewers/{viewer}/recommendations") as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                records.append((start - t0, (time.perf_counter() - start) * 1000, status))

        await asyncio.gather(*(client(urls[i % len(urls)].rstrip("/"), i) for i in range(concurrency)))
    return {"elapsed_s": time.perf_counter() - t0, "requests": records}


def main() -> int:
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the harness gave up before the load began
    job = orjson.loads(line)
    result = asyncio.run(
        load(
            job["urls"],
            os.environ[TOKEN_ENV],
            job["viewers"],
            int(job["concurrency"]),
            float(job["seconds"]),
            int(job["max_requests"]),
            int(job.get("seed", 7)),
            job.get("rate"),
        )
    )
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
