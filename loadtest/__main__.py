"""``python -m loadtest``: run the load test and report."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .extras import MissingExtra, require
from .harness import Config, run
from .report import summary, write


def _progress() -> Callable[[str, float], None]:
    last = {"label": ""}
    shown_at = [0.0]

    def show(label: str, fraction: float) -> None:
        now = time.monotonic()
        if label == last["label"] and now - shown_at[0] < 0.25 and fraction < 1:
            return
        last["label"] = label
        shown_at[0] = now
        width = 30
        filled = int(width * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r{label[:28]:<28} [{'#' * filled}{'.' * (width - filled)}] {fraction:5.0%}")
        sys.stderr.flush()

    return show


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
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("loadtest/results"))
    args = p.parse_args(argv)
    try:
        require("matplotlib")  # now, not after a run of minutes
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
        out_dir=args.out,
    )
    report = asyncio.run(run(cfg, _progress()))
    sys.stderr.write("\n")
    stem = time.strftime("report-%Y%m%d-%H%M%S")
    paths = write(report, args.out, stem)
    print(summary(report))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
