"""The results store: rows written as computed, skipped when rerun, a torn last line dropped."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from robustseg.evaluation.results import ResultsStore

COLUMNS = ["case_id", "attack", "eps", "region", "dice"]
KEY = ["case_id", "attack", "eps", "region"]


def row(case: str, eps: float, dice: float) -> dict[str, object]:
    return {"case_id": case, "attack": "fgsm", "eps": eps, "region": "ET", "dice": dice}


def test_rows_are_on_disk_as_soon_as_appended(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.csv", COLUMNS, KEY)
    assert store.append([row("a", 0.1, 0.5), row("b", 0.1, 0.25)]) == 2
    with (tmp_path / "r.csv").open() as f:
        on_disk = list(csv.DictReader(f))
    assert [(r["case_id"], float(r["dice"])) for r in on_disk] == [("a", 0.5), ("b", 0.25)]


def test_a_rerun_skips_finished_keys_and_keeps_values(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "r.csv", COLUMNS, KEY).append([row("a", 0.1, 0.5)])
    again = ResultsStore(tmp_path / "r.csv", COLUMNS, KEY)
    assert again.has(row("a", 0.1, 0.0)) and not again.has(row("a", 0.2, 0.0))
    assert again.append([row("a", 0.1, 0.9), row("a", 0.2, 0.4)]) == 1  # the finished row is not rewritten
    assert [(r["eps"], r["dice"]) for r in again.rows()] == [("0.1", "0.5"), ("0.2", "0.4")]


def test_killed_process_leaves_a_resumable_file(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    script = (
        "import os, sys\n"
        "from robustseg.evaluation.results import ResultsStore\n"
        f"s = ResultsStore({str(path)!r}, {COLUMNS!r}, {KEY!r})\n"
        "s.append([{'case_id': 'a', 'attack': 'fgsm', 'eps': 0.1, 'region': 'ET', 'dice': 0.5}])\n"
        "open(s.path, 'a').write('b,fgsm,0.1,E')  # a torn line, then the process dies\n"
        "os._exit(9)\n"
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    with pytest.warns(UserWarning, match="partly written"):
        store = ResultsStore(path, COLUMNS, KEY)
    assert [r["case_id"] for r in store.rows()] == ["a"]
    store.append([row("b", 0.1, 0.3)])
    assert [r["case_id"] for r in ResultsStore(path, COLUMNS, KEY).rows()] == ["a", "b"]


def test_results_of_another_sweep_are_refused(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "r.csv", COLUMNS, KEY)
    with pytest.raises(ValueError, match="belongs to another sweep"):
        ResultsStore(tmp_path / "r.csv", [*COLUMNS, "hd95"], KEY)


def test_bad_key_and_unknown_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not among the columns"):
        ResultsStore(tmp_path / "r.csv", COLUMNS, ["case_id", "model"])
    store = ResultsStore(tmp_path / "s.csv", COLUMNS, KEY)
    with pytest.raises(ValueError, match="does not have"):
        store.append([{**row("a", 0.1, 0.5), "psnr": 40.0}])


def test_nan_values_round_trip(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.csv", COLUMNS, KEY)
    store.append([row("a", 0.1, float("nan"))])
    assert ResultsStore(tmp_path / "r.csv", COLUMNS, KEY).rows()[0]["dice"] == "nan"
