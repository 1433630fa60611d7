from __future__ import annotations

import json

import pytest

from robustseg.data.datalist import SPLITS, load_datalist, split_cases, write_datalist

IDS = [f"case{i:03d}" for i in range(20)]


def test_split_is_deterministic_by_seed_and_ignores_input_order():
    a = split_cases(IDS, seed=1)
    assert split_cases(list(reversed(IDS)), seed=1) == a
    assert split_cases(IDS, seed=2) != a


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_splits_are_disjoint_and_cover_all_cases(seed):
    s = split_cases(IDS, (0.6, 0.2, 0.2), seed=seed)
    assert [len(s[n]) for n in SPLITS] == [12, 4, 4]
    assert sorted(s["training"] + s["validation"] + s["testing"]) == IDS
    assert not set(s["training"]) & set(s["validation"]) and not set(s["validation"]) & set(s["testing"])


def test_every_requested_split_gets_a_case():
    s = split_cases(IDS[:3], (0.8, 0.1, 0.1))
    assert [len(s[n]) for n in SPLITS] == [1, 1, 1]


@pytest.mark.parametrize(
    ("ids", "fractions", "match"),
    [
        ([], (0.7, 0.15, 0.15), "no cases"),
        (["a", "a"], (0.7, 0.15, 0.15), "unique"),
        (IDS, (0.7, 0.2, 0.2), "summing to 1"),
        (IDS, (0.5, 0.5), "3 non-negative"),
        (IDS, (1.2, -0.1, -0.1), "non-negative"),
    ],
)
def test_split_errors(ids, fractions, match):
    with pytest.raises(ValueError, match=match):
        split_cases(ids, fractions)


def _records(n=10):
    return [
        {"case_id": f"c{i}", "layout": "brats2023", "image": [f"c{i}/{m}.nii.gz" for m in "abcd"]} for i in range(n)
    ]


def test_write_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "datalist.json"
    written = write_datalist(_records(), path, seed=5, extra={"source": "test"})
    on_disk = json.loads(path.read_text())
    assert on_disk == written and on_disk["source"] == "test" and on_disk["seed"] == 5
    assert sorted(e["case_id"] for n in SPLITS for e in on_disk[n]) == sorted(f"c{i}" for i in range(10))
    assert [e["case_id"] for e in on_disk["training"]] == split_cases([f"c{i}" for i in range(10)], seed=5)["training"]
    entry = load_datalist(path, "validation")[0]
    assert entry["image"][0] == str(path.parent / on_disk["validation"][0]["image"][0])
    other = load_datalist(path, "testing", base_dir="/data")[0]
    assert other["image"][0].startswith("/data/")


def test_write_datalist_refuses_empty(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_datalist([], tmp_path / "d.json")
    assert not (tmp_path / "d.json").exists()


def test_load_datalist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_datalist"):
        load_datalist(tmp_path / "missing.json", "training")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_datalist(bad, "training")
    path = tmp_path / "d.json"
    write_datalist(_records(2), path, fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"'testing' split .* is empty"):
        load_datalist(path, "testing")
    with pytest.raises(ValueError, match="no 'train' split"):
        load_datalist(path, "train")
