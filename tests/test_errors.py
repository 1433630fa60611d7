"""robustseg.errors: which errors are robustseg's, the one line they become, and the clean-up of a failed run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robustseg import errors
from robustseg.data.datalist import load_datalist


def monai_style(error: BaseException) -> RuntimeError:
    """``error`` wrapped the way MONAI's ConfigExpression wraps what an expression raised."""
    try:
        try:
            raise error
        except Exception as inner:
            raise RuntimeError("Failed to evaluate ConfigExpression: $...") from inner
    except RuntimeError as outer:
        return outer


def test_a_robustseg_error_is_found_under_monai_s_wrapper(tmp_path: Path) -> None:
    try:
        load_datalist(tmp_path / "missing.json", "testing")
    except FileNotFoundError as e:
        raised = e
    found = errors.user_error(monai_style(raised))
    assert found is raised
    assert errors.report(found).startswith("robustseg: error: ") and "\n" not in errors.report(found)


def test_errors_raised_outside_robustseg_are_not_user_errors() -> None:
    try:
        int("not a number")  # a ValueError, but not one robustseg raised about its input
    except ValueError as e:
        raised = e
    assert errors.user_error(monai_style(raised)) is None
    assert errors.user_error(KeyError("x")) is None


def test_about_names_the_option() -> None:
    with pytest.raises(ValueError, match=r"^--attack_eps: eps must be > 0$"), errors.about("--attack_eps"):
        raise ValueError("eps must be > 0")


def test_discard_created_removes_only_what_the_run_created(tmp_path: Path) -> None:
    errors.keep_created()  # forget what earlier tests of this process announced
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("was there before")
    errors.creating(existing / "new.json").write_text("{}")
    errors.creating(tmp_path / "new" / "deep" / "file.csv")
    (tmp_path / "new" / "deep").mkdir(parents=True)
    (tmp_path / "new" / "deep" / "file.csv").write_text("a")
    errors.creating(existing)  # existed: nothing to remove
    removed = errors.discard_created()
    assert sorted(removed) == sorted([existing / "new.json", tmp_path / "new"])
    assert (existing / "keep.txt").is_file() and not (tmp_path / "new").exists()
    assert errors.discard_created() == []  # forgotten once discarded


def test_keep_created_forgets_announced_paths(tmp_path: Path) -> None:
    errors.keep_created()
    errors.creating(tmp_path / "results").mkdir()
    errors.keep_created()
    assert errors.discard_created() == [] and (tmp_path / "results").is_dir()


def test_the_excepthook_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    created = tmp_path / "out"
    script = (
        "import robustseg.errors as e\n"
        f"e.install(); e.creating({str(created)!r}).mkdir()\n"
        "with e.about('--attack_eps'):\n    raise ValueError('every budget must be > 0')\n"
    )
    env = {"ROBUSTSEG_DEBUG": "", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == ["robustseg: error: --attack_eps: every budget must be > 0"]
    assert not created.exists()
    debug = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**env, "ROBUSTSEG_DEBUG": "1"}
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and created.exists()


def test_the_robustseg_command_prints_one_line_unless_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustseg.cli import main

    monkeypatch.delenv("ROBUSTSEG_DEBUG", raising=False)
    missing = tmp_path / "no_bundle"
    assert main(["audit", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robustseg: error: ") and str(missing) in err[0]
    with pytest.raises(Exception, match=str(missing)):
        main(["--debug", "audit", str(missing)])
