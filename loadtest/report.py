"""The load test's outputs: a one-screen summary, the JSON report, PNG plots.

Report schema (top level; ``schema_version`` 1):

- ``sustainable_eps``: events per second one run of worker(s) applied while draining a backlog
  (the baselines are drained the same way, so the ratios compare like with like).
- ``ramp``: open loop at rising rates (fractions of ``sustainable_eps``, ``--ramp-step`` s each):
  per step the lag at its start and end; ``ramp.sustainable_eps`` is the highest rate whose lag
  stayed within half a second of events (fetches are small in an open loop, so it is lower).
- ``baselines``: ``faust_eps`` (bare Faust agent), ``aiokafka_eps`` (raw loop), ``ratio_to_faust``,
  ``ratio_to_aiokafka``, and each run's details.
- ``latency_ms``: ``p50``, ``p95``, ``p99``, ``max``, ``n``, the offered ``rate`` (half the
  ramp's sustainable rate, else half the drained one, unless ``--rate``) and the rate actually
  sent (``sent_eps``; lower when the harness itself runs short of CPU): snapshot received minus
  its trigger event's publication,
  for events published after the warm-up (``latency.warmup_s``; the worker's own start-up,
  which the timeline still shows, flagged ``warmup``). ``latency.to_snapshot_ms``: the part
  up to the snapshot being made (its ``generated_at`` minus the event's ``ts``).
- ``http``: the latency phase run again (same rate and events) while, from its warm-up's end to
  its end (or ``max_requests``), ``concurrency`` keep-alive clients in a process of their own read
  ``GET /viewers/{id}/recommendations`` of viewers with snapshots on loopback: ``requests``,
  ``rps``, ``latency_ms`` (answered requests), ``statuses`` (``"error"``: no answer),
  ``window_s`` and ``window`` (s from the phase's start); the stream's latency of events
  published while the reads ran (``stream_latency_ms``) beside the latency phase's over the same
  seconds of its run (``stream_latency_ms_without``: same events, same schedule, no reads) and
  ``stream_p99_rise_pct``; ``goals`` (HTTP p99 <= 20 ms, stream p99 rise <= 10 %, printed,
  not asserted) and ``goals_met``; ``stream``: the phase's own open loop. Empty with ``--no-http``.
- ``events_sent``, ``events_applied``: over all phases.
- ``bytes_per_viewer``: serialised profile bytes (mean, max) and in-memory table bytes per
  viewer for ``10000`` and ``100000`` viewers.
- ``catalog_scaling``: eps at the standard and the large catalog, and their ratio.
- ``learning``: after 30 events, the share of listed titles the viewer would finish, for
  ``model``, ``popularity`` and ``random``; ``curve`` by events sent.
- ``drain``, ``latency``, ``config``, ``elapsed_s``: the details (timeline per second with sent,
  applied, lag, snapshots, latency, worker CPU and RSS, tail-fetch time; broker degradation).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import orjson

from .extras import pyplot

__all__ = ["summary", "write"]


def _f(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def _ramp(ramp: dict[str, Any]) -> str:
    if not ramp.get("steps"):
        return "not run"
    steps = " ".join(f"{_f(st['rate'], '')}{'' if st['bounded'] else '(lag grew)'}" for st in ramp["steps"])
    return f"sustainable {_f(ramp.get('sustainable_eps'), ' ev/s')}   steps {steps}"


def _goal(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def _http(http: dict[str, Any], worker_without: dict[str, Any]) -> list[str]:
    if not http:
        return ["  http reads           not run"]
    if http.get("error") and not http.get("requests"):
        return [f"  http reads           failed: {http['error']}"]
    ms, goals, met = http["latency_ms"], http["goals"], http["goals_met"]
    statuses = ", ".join(f"{k}: {v:,}" for k, v in http["statuses"].items())
    under, without = http["stream_latency_ms"], http["stream_latency_ms_without"]
    rise = http["stream_p99_rise_pct"]
    start, end = http.get("window") or (None, None)
    window = "n/a" if start is None else f"s {start:.1f}-{end:.1f} of the phase"
    return [
        f"  http reads           {_f(http['rps'], ' req/s')} ({http['concurrency']} clients"
        f"{', paced at ' + _f(http['rate_offered'], '/s') if http.get('rate_offered') else ''},"
        f" {http['requests']:,} requests in {_f(http['window_s'], ' s', 1)}{', capped' if http['capped'] else ''})"
        f"  p50 {_f(ms['p50'], ' ms', 2)}  p99 {_f(ms['p99'], ' ms', 2)}"
        f" (goal <= {_f(goals['http_p99_ms'], ' ms')}: {_goal(met['http_p99'])})",
        f"                       statuses {statuses}",
        f"  stream under reads   p50 {_f(under['p50'], ' ms', 1)}  p99 {_f(under['p99'], ' ms', 1)}"
        f"  ({under['n']:,} snapshots of events sent in {window})",
        f"  stream without       p50 {_f(without['p50'], ' ms', 1)}  p99 {_f(without['p99'], ' ms', 1)}"
        f"  (latency phase, same seconds): p99 {'n/a' if rise is None else f'{rise:+.1f} %'}"
        f" (goal <= +{_f(goals['stream_p99_rise_pct'], ' %')}: {_goal(met['stream_p99_rise'])})",
        f"                       worker CPU {_f(http['stream']['worker']['cpu_percent_mean'], ' %')} mean"
        f" with reads, {_f(worker_without.get('cpu_percent_mean'), ' %')} without",
    ]


def summary(report: dict[str, Any]) -> str:
    b = report.get("baselines") or {}
    lat = report["latency_ms"]
    learn = report["learning"]
    scale = report["catalog_scaling"]
    state = report["bytes_per_viewer"]
    deg = report["latency"]["broker_degradation"]
    lines = [
        "stream load test",
        f"  sustainable rate     {_f(report['sustainable_eps'], ' ev/s')}"
        + (
            f"   (bare Faust {_f(b.get('faust_eps'), ' ev/s')}: x{_f(b.get('ratio_to_faust'), '', 2)};"
            f" raw aiokafka {_f(b.get('aiokafka_eps'), ' ev/s')}: {_f(100 * (b.get('ratio_to_aiokafka') or 0), ' %')})"
            if b
            else ""
        ),
        f"  open-loop ramp       {_ramp(report.get('ramp') or {})}",
        f"  latency @ {_f(lat['rate'], ' ev/s')}   p50 {_f(lat['p50'], ' ms', 1)}  p95 {_f(lat['p95'], ' ms', 1)}"
        f"  p99 {_f(lat['p99'], ' ms', 1)}  max {_f(lat['max'], ' ms', 1)}  ({lat['n']} snapshots;"
        f" sent {_f(lat.get('sent_eps'), ' ev/s')})",
        *_http(report.get("http") or {}, report["latency"]["worker"]),
        "  catalog scaling      "
        + "  ".join(f"{k} titles: {_f(v, ' ev/s')}" for k, v in scale.items() if k != "ratio")
        + (f"  (ratio {_f(scale.get('ratio'), '', 2)})" if scale.get("ratio") is not None else ""),
        f"  state per viewer     {_f(state['serialised_mean'], ' B')} serialised (max {state['serialised_max']} B);"
        f" in memory {_f(state['10000'], ' B')} at 10k, {_f(state['100000'], ' B')} at 100k viewers",
        f"  learning after {learn['after_events']} events: model {_f(learn['model'], '', 3)}"
        f"  popularity {_f(learn['popularity'], '', 3)}  random {_f(learn['random'], '', 3)}"
        + (
            f"  (x{learn['model'] / learn['popularity']:.1f} popularity)"
            if learn["model"] is not None and learn["popularity"]
            else ""
        ),
        f"  events               sent {report['events_sent']:,}  applied {report['events_applied']:,}",
        f"  worker               CPU {_f(report['latency']['worker']['cpu_percent_mean'], ' %')} mean,"
        f" RSS {_f(report['latency']['worker']['rss_mb_max'], ' MB')} max",
        "  broker               "
        + (
            "DEGRADING: latency and tail fetch time rose together while the worker had CPU to spare"
            if deg["suspected"]
            else f"steady (tail-fetch trend x{_f(deg['tail_fetch_ms_trend'], '', 2)},"
            f" latency trend x{_f(deg['latency_p50_trend'], '', 2)})"
        ),
        f"  took {_f(report['elapsed_s'], ' s')}",
    ]
    return "\n".join(lines)


def plots(report: dict[str, Any], out: Path, stem: str) -> list[Path]:
    plt = pyplot()
    written = []
    timeline = report["latency"]["timeline"]
    t = [s["t"] for s in timeline]

    fig, ax = plt.subplots(figsize=(8, 4))
    for key in ("p50", "p95", "p99"):
        ax.plot(t, [s["latency_ms"][key] for s in timeline], label=key)
    ax.set(xlabel="seconds", ylabel="ms", title=f"End-to-end latency at {report['latency_ms']['rate']:.0f} ev/s")
    ax.axvspan(0, report["latency"].get("warmup_s", 0), color="grey", alpha=0.15, label="warm-up")
    ax.legend()
    written.append(_save(fig, out / f"{stem}-latency.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    sent = [s["sent"] for s in timeline]
    applied = [s["applied"] for s in timeline]
    ax.plot(t[1:], [b - a for a, b in itertools.pairwise(sent)], label="sent / s")
    ax.plot(t[1:], [b - a for a, b in itertools.pairwise(applied)], label="applied / s")
    ax2 = ax.twinx()
    ax2.plot(t, [s["lag"] for s in timeline], color="grey", linestyle=":", label="lag (events)")
    ax.set(xlabel="seconds", ylabel="events per second", title="Throughput and lag")
    ax2.set_ylabel("lag")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    written.append(_save(fig, out / f"{stem}-throughput.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    lat = report["latency"].get("latencies") or [0]
    ax.hist(lat, bins=60)
    ax.set(xlabel="ms", ylabel="snapshots", title="Latency histogram", yscale="log")
    written.append(_save(fig, out / f"{stem}-histogram.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    curve = report["learning"]["curve"]
    for key in ("model", "popularity", "random"):
        ax.plot([c["events"] for c in curve], [c[key] for c in curve], marker="o", label=key)
    ax.set(xlabel="events the viewer has sent", ylabel="share of list the viewer would finish", title="Learning")
    ax.legend()
    written.append(_save(fig, out / f"{stem}-learning.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write(report: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write ``<stem>.json``, ``latest.json`` and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    slim = dict(report)
    slim["latency"] = {k: v for k, v in report["latency"].items() if k not in ("latencies", "latency_sent_s")}
    slim["learning"] = {k: v for k, v in report["learning"].items() if k != "measures"}
    # (the http phase's per-request records stay out of the report: its figures are in it)
    data = orjson.dumps(slim, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    paths = [out / f"{stem}.json", out / "latest.json"]
    for path in paths:
        path.write_bytes(data)
    return paths + plots(report, out, stem)
