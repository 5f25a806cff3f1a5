"""The bench extra (matplotlib, tqdm): only loadtest/ uses it, and says what to install without it."""

from __future__ import annotations

import doctest
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import extras, replay, report
from loadtest.__main__ import _Progress
from loadtest.__main__ import main as loadtest_main
from loadtest.extras import INSTALL, MissingExtra

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "tests" / "data" / "replay" / "log.jsonl"


def test_no_stream_module_imports_matplotlib_or_loadtest() -> None:
    # in a fresh interpreter: this one has imported loadtest (and maybe matplotlib) already
    code = """
import importlib, pkgutil, sys
import stream
names = [m.name for m in pkgutil.walk_packages(stream.__path__, "stream.") if m.name != "stream.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "loadtest")))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, leaked = done.stdout.splitlines()
    assert int(count) > 20, "every module under stream/ was imported"
    assert leaked == "[]"


def test_the_docstring_examples_run() -> None:
    # testpaths holds tests/ and stream/ only, so loadtest's doctests are run from here
    result = doctest.testmod(extras, raise_on_error=False)
    assert result.attempted and not result.failed


@pytest.mark.parametrize("plots", [report.plots, replay.plots])
def test_the_plots_without_matplotlib_say_what_to_install(
    plots: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: `import matplotlib` fails
    with pytest.raises(ImportError, match="matplotlib is not installed") as raised:
        plots({}, tmp_path, "report")  # type: ignore[operator]
    assert isinstance(raised.value, MissingExtra)
    assert INSTALL == "pip install '.[bench]'" and str(raised.value).endswith(INSTALL)


@pytest.mark.parametrize("missing", ["matplotlib", "tqdm"])
def test_the_load_test_without_the_bench_extra_says_what_to_install_before_it_starts(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    assert loadtest_main(["--viewers", "10", "--no-baselines", "--no-scaling", "--no-ramp"]) == 2
    need = f"the load test and the replay need the bench extra: {INSTALL}"
    assert capsys.readouterr().err == f"loadtest: {missing} is not installed: {need}\n"
    with pytest.raises(SystemExit) as done:
        loadtest_main(["--help"])  # help needs no extra
    assert done.value.code == 0


def test_the_replay_without_matplotlib_says_what_to_install_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert replay.main([str(LOG)]) == 2
    assert capsys.readouterr().err.endswith(f"the bench extra: {INSTALL}\n")


def test_without_a_terminal_progress_is_one_plain_line_per_phase() -> None:
    out = io.StringIO()  # not a terminal, as a CI log is not
    progress = _Progress(out)
    for label, fraction in [("drain: applied", 0.2), ("drain: applied", 1.0), ("learning", 0.1), ("learning", 0.4)]:
        progress(label, fraction)
    progress.close()
    progress.close()  # closing twice writes nothing more
    assert "\r" not in out.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"drain: applied: 100% in \d+ s", lines[0])
    assert re.fullmatch(r"learning: 40% in \d+ s", lines[1])


def test_on_a_terminal_each_phase_gets_a_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    progress = _Progress(out)
    progress("drain: applied", 0.5)
    progress("drain: applied", 1.0)
    progress("learning", 0.3)
    progress.close()
    lines = out.getvalue().split("\n")
    assert lines[0].startswith("\rdrain: applied") and lines[0].rstrip().endswith("100% [00:00]")
    assert lines[1].startswith("\rlearning") and "30%" in lines[1]
