"""The ``stream`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from typing import IO

from stream.settings import Settings, SettingsError

__all__ = ["main"]


def _cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.signals import signals_ignored, sigterm_interrupts
    from stream.runtime.broker import BrokerError, EmbeddedBroker

    broker = EmbeddedBroker(port=args.port or None, host=args.host)  # --port 0: a free one
    with sigterm_interrupts():
        try:
            broker.start()
            print(f"embedded broker listening on {broker.bootstrap} (pid {broker.pid}); Ctrl-C stops it", flush=True)
            code = broker.wait()
        except BrokerError as exc:
            print(f"stream broker: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop it, so a success
            return 0
        finally:
            with signals_ignored():
                broker.stop()
    print(f"stream broker: the broker exited by itself (status {code})", file=sys.stderr)
    return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from stream.contracts.topics import load_specs
    from stream.runtime.kafka import create_topics

    if args.action == "create":
        created = asyncio.run(create_topics(settings))
        for spec in load_specs(settings).values():
            name = settings.topic(spec.name)
            state = "created" if name in created else "exists"
            print(f"{state:8} {name}  partitions={spec.partitions} cleanup={spec.cleanup_policy}")
        return 0
    for spec in load_specs(settings).values():
        print(f"{settings.topic(spec.name)}  partitions={spec.partitions} key={spec.key} value={spec.value_schema}")
    return 0


def _cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from faust import Worker

    from stream.processing import one_blas_thread
    from stream.runtime.app import create_app

    one_blas_thread()  # a worker is one event loop on one core
    stream_app = create_app(settings)
    worker = Worker(stream_app.app, loglevel=settings.log_level, quiet=True)
    # Faust's terminal spinner lowers the root logger to DEBUG (at warn and above) so
    # that it spins on every record: every debug record of aiokafka is then built.
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.produce import produce_lines

    source: IO[str] = open(args.file, encoding="utf-8") if args.file and args.file != "-" else sys.stdin  # noqa: SIM115
    try:
        report = asyncio.run(produce_lines(settings, source))
    finally:
        if source is not sys.stdin:
            source.close()
    for line_no, reason in report.rejected:
        print(f"line {line_no}: rejected: {reason}", file=sys.stderr)
    counts = ", ".join(f"{n} to {t}" for t, n in sorted(report.sent.items())) or "nothing"
    print(f"published {counts}; rejected {len(report.rejected)}")
    return 1 if report.rejected else 0


def _cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.watch import watch

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(settings, user=args.user, from_beginning=args.from_beginning, limit=args.limit))
    return 0


def _cmd_group(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from stream.cli.state import load_state
    from stream.ranking.group import rank_group

    try:
        catalog, members, model = asyncio.run(load_state(settings, args.users))
    except (LookupError, TimeoutError) as exc:
        print(f"stream group: {exc}", file=sys.stderr)
        return 1
    items = rank_group(members, catalog, model, top_k=args.top, now_ms=int(time.time() * 1000))
    print(f"for {', '.join(args.users)} watching together:")
    for item in items:
        entry = catalog.get(item.item_id)
        name = entry.title if entry is not None else item.item_id
        print(f"  {item.rank:>2}. {name[:30]:<30} {item.score:>7.3f}  {'; '.join(item.reasons)}")
    if not items:
        print("  nothing that none of you minds")
    return 0


def _cmd_tokens(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from stream.runtime.tokens import TokenError, TokenStore

    store = TokenStore(settings.api_tokens_file)
    try:
        if args.action == "add":
            token = store.add(args.name or "", (args.scopes or "").split(","))
            print(f"token {args.name!r} with scopes {args.scopes} stored in {store.path} (as a salted hash)")
            print("it is shown this once; keep it where its users can read it:")
            print(token)
        elif args.action == "revoke":
            if not store.revoke(args.name or ""):
                print(f"stream tokens: no token named {args.name!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.name!r}; workers stop accepting it at their next request")
        else:
            for info in store.list():
                made = dt.datetime.fromtimestamp(info.created_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                print(f"{info.name}\t{','.join(info.scopes)}\t{made}")
    except TokenError as exc:
        print(f"stream tokens: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.demo import run_demo

    return run_demo(settings, duration=args.duration, port=args.port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream", description="Real-time recommendations from playback events.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    p.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=_cmd_broker)

    p = sub.add_parser("topics", help="create (or list) the topics of topics/ on the configured cluster")
    p.add_argument("action", choices=["create", "list"])
    p.set_defaults(func=_cmd_topics)

    p = sub.add_parser("worker", help="run a worker; any number may join the same group")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("produce", help="publish JSON lines (events, catalog entries, commands) to their topics")
    p.add_argument("file", nargs="?", help="a JSON-lines file; stdin when absent or '-'")
    p.set_defaults(func=_cmd_produce)

    p = sub.add_parser("watch", help="follow the recommendations topic and print snapshots")
    p.add_argument("--user", help="only this viewer")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest snapshot")
    p.add_argument("--limit", type=int, default=0, help="stop after this many snapshots (0: never)")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("group", help="one list for several viewers watching together")
    p.add_argument("users", nargs="+", help="the viewers' user ids")
    p.add_argument("--top", type=int, default=10, help="titles in the list (default 10)")
    p.set_defaults(func=_cmd_group)

    p = sub.add_parser("tokens", help="API tokens of the workers' HTTP routes (STREAM_API_TOKENS_FILE)")
    p.add_argument("action", choices=["add", "list", "revoke"])
    p.add_argument("name", nargs="?", help="add, revoke: the token's name (letters, digits, '-', '_')")
    p.add_argument("--scopes", help="add: comma-separated, of read, profile, commands, admin")
    p.set_defaults(func=_cmd_tokens)

    p = sub.add_parser("demo", help="broker, topics, worker and simulated viewers in one command")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of simulated viewing (default 60)")
    p.add_argument("--port", type=int, default=0, help="embedded broker port (default: a free one)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"stream: {exc}", file=sys.stderr)
        return 2
    if args.command == "worker":
        # faust's Worker reads sys.argv; give it only the program name.
        sys.argv = sys.argv[:1]
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
