"""The one CLI pattern (annotate.core.commands): one-line errors with exit 2, VOCMASK_DEBUG=1 for the traceback,
and subcommand help that imports no heavy library."""
from __future__ import annotations

import subprocess
import sys

import pytest

from annotate.core.commands import Command, command_parser, run_cli


def _parser(fail: BaseException | None):
    def run(a) -> int:
        if fail is not None:
            raise fail
        print(f"ran {a.cmd} with {a.n}")
        return 0

    def args(p) -> None:
        p.add_argument("--n", type=int, default=1)

    return command_parser("tool", "a test tool", {"go": Command("run it", args, run)})


def test_a_command_runs_and_returns_its_status(capsys):
    assert run_cli("tool", _parser(None), ["go", "--n", "3"]) == 0
    assert capsys.readouterr().out == "ran go with 3\n"


@pytest.mark.parametrize("error, line", [
    (ValueError("--n 0: must be >= 1"), "tool go: error: --n 0: must be >= 1"),
    (KeyError("id 'x' not found"), "tool go: error: id 'x' not found"),
    (FileNotFoundError("no shards in DS/data"), "tool go: error: no shards in DS/data"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, monkeypatch, error, line):
    monkeypatch.delenv("VOCMASK_DEBUG", raising=False)
    assert run_cli("tool", _parser(error), ["go"]) == 2
    err = capsys.readouterr().err
    assert err == line + "\n" and "Traceback" not in err


def test_several_problems_are_one_line_each_and_other_types_only_when_named(capsys, monkeypatch):
    class ProjectError(Exception):
        pass

    monkeypatch.delenv("VOCMASK_DEBUG", raising=False)
    assert run_cli("tool", _parser(ProjectError("first\nsecond")), ["go"], errors=(ProjectError,)) == 2
    assert capsys.readouterr().err.splitlines() == ["tool go: error: first", "tool go: error: second"]
    with pytest.raises(ProjectError):  # not declared: a bug, so its traceback shows
        run_cli("tool", _parser(ProjectError("x")), ["go"])


def test_vocmask_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("VOCMASK_DEBUG", "1")
    with pytest.raises(ValueError, match="bad"):
        run_cli("tool", _parser(ValueError("bad")), ["go"])
    monkeypatch.setenv("VOCMASK_DEBUG", "0")
    assert run_cli("tool", _parser(ValueError("bad")), ["go"]) == 2


@pytest.mark.parametrize("module, argv", [("annotate.cli", ["resynth", "--help"]), ("training.cli", ["detector", "--help"]),
                                          ("baselines.cli", ["--help"]), ("benchmark.cli", ["score", "--help"])])
def test_help_imports_no_heavy_library(module, argv):
    code = (f"import sys\nfrom {module} import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('torch', 'scipy.signal', 'librosa', 'datasets') if m in sys.modules)\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "usage:" in r.stdout, r.stderr[-2000:]
    assert "HEAVY []" in r.stderr, r.stderr[-500:]
