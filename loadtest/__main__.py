"""``python -m loadtest``: run the load test and report."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .extras import MissingExtra, require
from .harness import Config, run
from .report import summary, write


class _Progress:
    """The harness's progress (a label and a fraction done), one tqdm bar per phase.

    On a terminal each phase gets a bar, redrawn at most four times a second and left
    in place when the next phase starts. Where stderr is not a terminal (a CI log, a
    file) tqdm draws nothing (``disable=None``) rather than a stream of carriage
    returns; instead each phase writes one plain line as it ends: how far it got and
    how long it took.
    """

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file  # None: stderr as it is when a phase starts
        self.label: str | None = None
        self.fraction = 0.0
        self.started = 0.0
        self.bar: Any = None

    def __call__(self, label: str, fraction: float) -> None:
        from tqdm import tqdm

        if label != self.label:
            self.close()
            self.label, self.fraction, self.started = label, 0.0, time.monotonic()
            bar_format = "{desc:<28.28} |{bar:30}| {percentage:3.0f}% [{elapsed}]"
            self.bar = tqdm(
                total=1.0, desc=label, bar_format=bar_format, mininterval=0.25, disable=None, leave=True, file=self.file
            )
        fraction = max(0.0, min(1.0, fraction))
        self.bar.update(fraction - self.fraction)
        self.fraction = fraction

    def close(self) -> None:
        """End the current phase's bar (or, with no terminal, write its line)."""
        if self.bar is None:
            return
        if self.bar.disable:
            out = self.file or sys.stderr
            out.write(f"{self.label}: {self.fraction:.0%} in {time.monotonic() - self.started:.0f} s\n")
            out.flush()
        self.bar.close()
        self.bar = None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtest", description=__doc__)
    p.add_argument("--viewers", type=int, default=10_000)
    p.add_argument("--titles", type=int, default=5_000)
    p.add_argument("--titles-large", type=int, default=100_000)
    p.add_argument("--events", type=int, default=30_000, help="events drained to find the sustainable rate")
    p.add_argument("--rate", type=float, help="open-loop rate for the latency phase (default: half the sustainable)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of the latency phase")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--learn-viewers", type=int, default=1_000)
    p.add_argument("--learn-events", type=int, default=32)
    p.add_argument("--learn-seconds", type=float, default=90.0)
    p.add_argument("--bootstrap", help="an existing cluster (default: an embedded broker started for the run)")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--no-ramp", action="store_true", help="skip the open-loop ramp")
    p.add_argument("--ramp-step", type=float, default=6.0, help="seconds per ramp step (default 6)")
    p.add_argument("--no-http", action="store_true", help="skip the http phase (reads beside the latency phase)")
    p.add_argument("--http-concurrency", type=int, default=4, help="concurrent readers in the http phase (default 4)")
    p.add_argument("--http-requests", type=int, default=20_000, help="most requests of the http phase (default 20,000)")
    p.add_argument(
        "--http-rate", type=float, help="requests/s of the http phase in all (default: as fast as answers come)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = p.parse_args(argv)
    if args.http_concurrency < 1 or args.http_requests < 1:
        p.error("--http-concurrency and --http-requests must be at least 1")
    if args.http_rate is not None and args.http_rate <= 0:
        p.error("--http-rate must be positive")
    try:
        require("matplotlib", "tqdm")  # now, not after a run of minutes
    except MissingExtra as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the broker and workers this run started are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cfg = Config(
        viewers=args.viewers,
        titles=args.titles,
        titles_large=args.titles_large,
        seed=args.seed,
        drain_events=args.events,
        baseline_events=min(args.events, 20_000),
        rate=args.rate,
        duration=args.duration,
        workers=args.workers,
        partitions=args.partitions,
        learn_viewers=min(args.learn_viewers, args.viewers),
        learn_events=args.learn_events,
        learn_seconds=args.learn_seconds,
        bootstrap=args.bootstrap,
        baselines=not args.no_baselines,
        scaling=not args.no_scaling,
        ramp=not args.no_ramp,
        ramp_step_s=args.ramp_step,
        http=not args.no_http,
        http_concurrency=args.http_concurrency,
        http_max_requests=args.http_requests,
        http_rate=args.http_rate,
        out_dir=args.out,
    )
    progress = _Progress()
    try:
        report = asyncio.run(run(cfg, progress))
    finally:
        progress.close()
    stem = time.strftime("report-%Y%m%d-%H%M%S")
    paths = write(report, args.out, stem)
    print(summary(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
