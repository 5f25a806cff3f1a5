"""The tools stop cleanly: ``stream broker`` stops at once on SIGINT and SIGTERM, and no child
(the broker's Tansu, the demo's worker) outlives a parent that is SIGKILLed."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.runtime.broker import free_port, wait_for_port
from stream.runtime.lifetime import die_with_parent


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has ended (only its exit status is left to collect), unless
    other threads of it are still exiting (its sockets are closed when the last one is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" or len(os.listdir(f"/proc/{pid}/task")) > 1
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _closed_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while wait_for_port("127.0.0.1", port, 0.1):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _first_line(proc: subprocess.Popen[str], seconds: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    assert ready, f"no output within {seconds:.0f}s"
    return proc.stdout.readline()


class Started:
    """Processes a test started, by PID: whatever is still alive at teardown is SIGKILLed."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.pids: list[tuple[int, str]] = []  # (pid, a word of its command line), not our children

    def popen(self, args: list[str]) -> subprocess.Popen[str]:
        # Started as from a terminal, with Ctrl-C at its default: a shell starts a background job (`&`)
        # with SIGINT ignored, and a child inherits an ignored signal (a handled one is reset at exec)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        self.procs.append(proc)
        return proc

    def adopt(self, pid: int, word: str) -> int:
        self.pids.append((pid, word))
        return pid

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)
        for pid, word in self.pids:
            with contextlib.suppress(OSError):  # only if that PID is still the process we saw
                if _alive(pid) and word in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started() -> Iterator[Started]:
    processes = Started()
    try:
        yield processes
    finally:
        processes.cleanup()


def _stream_broker(started: Started) -> tuple[subprocess.Popen[str], int, int]:
    """``stream broker`` on a free port, once it listens: (its process, the port, its Tansu child's PID)."""
    port = free_port()
    proc = started.popen([sys.executable, "-m", "stream", "broker", "--port", str(port)])
    line = _first_line(proc, 30)
    found = re.search(r"listening on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", line)
    assert found, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    child = started.adopt(int(found.group(2)), "tansu")
    assert int(found.group(1)) == port and _alive(child)
    assert wait_for_port("127.0.0.1", port, 5)
    return proc, port, child


@pytest.mark.broker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stream_broker_stops_at_once_on_a_signal(started: Started, sig: signal.Signals) -> None:
    proc, port, child = _stream_broker(started)
    began = time.monotonic()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=20)
    took = time.monotonic() - began
    print(f"stream broker stopped {took * 1000:.0f} ms after {sig.name} (exit status {proc.returncode})")
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert took < 2.0, f"stream broker took {took:.2f}s to stop on {sig.name}"  # about 0.05 s; it took 10 s
    assert not _alive(child), "the Tansu child outlived stream broker"
    assert _closed_within(port, 2), "something still listens on the broker's port"


@pytest.mark.broker
def test_a_killed_stream_broker_takes_its_tansu_child_along(started: Started) -> None:
    proc, port, child = _stream_broker(started)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    began = time.monotonic()
    assert _gone_within(child, 5), "the Tansu child outlived a SIGKILLed stream broker"
    print(f"the Tansu child was gone {(time.monotonic() - began) * 1000:.0f} ms after its parent's SIGKILL was reaped")
    assert _closed_within(port, 2), "something still listens on the broker's port"


@pytest.mark.broker
def test_stream_broker_says_when_its_port_is_taken(started: Started) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = started.popen([sys.executable, "-m", "stream", "broker", "--port", str(taken.getsockname()[1])])
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "something already listens on" in stderr and "Traceback" not in stderr, stderr


def test_a_child_started_with_die_with_parent_dies_with_a_killed_parent(started: Started) -> None:
    # what start_worker and EmbeddedBroker do, with a child that would otherwise sleep for a minute
    parent = started.popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import subprocess, time
                from stream.runtime.lifetime import die_with_parent
                child = subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent())
                print(child.pid, flush=True)
                time.sleep(60)
                """
            ),
        ]
    )
    child = started.adopt(int(_first_line(parent, 30)), "sleep")
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.communicate(timeout=10)
    assert _gone_within(child, 5), "the child outlived its SIGKILLed parent"


def test_die_with_parent_is_armed_only_from_the_main_thread() -> None:
    # the kernel's parent is the forking *thread*: a child forked from a passing thread would die with it
    from_thread: list[object] = []
    thread = threading.Thread(target=lambda: from_thread.append(die_with_parent()))
    thread.start()
    thread.join(10)
    assert from_thread == [None]
    assert callable(die_with_parent()) == sys.platform.startswith("linux")
