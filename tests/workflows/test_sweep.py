"""The condition sweep's guarantees: fingerprinted folders, unique conditions, seeds per case, noise baselines, the
worst case, and self-checks that catch models built to fool an audit."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer
from workflow_helpers import nested_tumour, small_conv_net

from robustseg.attacks import ThreatModel
from robustseg.conditions import attack_conditions
from robustseg.labels import BRATS
from robustseg.workflows.attack_sweep import AttackSweep
from robustseg.workflows.fingerprint import FingerprintMismatchError
from robustseg.workflows.sweep import worst_case_rows


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def train(net: torch.nn.Module, seed: int, steps: int = 120) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cases = [nested_tumour(rng) for _ in range(6)]
    images, labels = torch.stack([c[0] for c in cases]), torch.stack([c[1][0] for c in cases])
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(images), labels, weight=torch.tensor([0.3, 1.0, 1.0, 1.0])).backward()
        optimiser.step()
    return net.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two softmax nets trained on nested tumours (different seeds), their checkpoints, and 3 test cases."""
    root = tmp_path_factory.mktemp("models")
    nets = {name: train(small_conv_net(out_channels=4), seed) for name, seed in (("a", 0), ("b", 1))}
    paths = {}
    for name, net in nets.items():
        paths[name] = root / f"{name}.pt"
        torch.save(net.state_dict(), paths[name])
    rng = np.random.default_rng(5)
    cases = [
        {"image": i, "label": lab, "case_id": f"case{k}"}
        for k, (i, lab) in enumerate(nested_tumour(rng) for _ in range(3))
    ]
    return {"nets": nets, "paths": paths, "cases": cases}


def sweep(models: dict, out: Path, net: str = "a", cases: list | None = None, **kwargs) -> AttackSweep:
    options = {"attacks": ["fgsm", {"name": "pgd", "steps": 3}], "eps": [0.3], "mask": "none", "num_examples": 0}
    options.update(kwargs)
    network = small_conv_net(out_channels=4)
    return AttackSweep(
        network, models["paths"][net], SimpleInferer(), cases or models["cases"], output_dir=out, **options
    )


def test_rerunning_with_another_checkpoint_stops_and_names_what_differs(models, tmp_path: Path) -> None:
    """A rerun with another model used to reuse the first model's rows silently."""
    first = sweep(models, tmp_path).run()
    with pytest.raises(FingerprintMismatchError, match="checkpoint_sha256") as info:
        sweep(models, tmp_path, net="b").run()
    assert "--fresh" in str(info.value)
    assert read_rows(tmp_path / "results.csv") and json.loads((tmp_path / "fingerprint.json").read_text())
    fresh = sweep(models, tmp_path, net="b", fresh=True).run()
    alone = sweep(models, tmp_path / "alone", net="b").run()
    clean = [(r["case_id"], r["region"], r["dice"]) for r in fresh["rows"] if r["condition"] == "clean"]
    assert clean == [(r["case_id"], r["region"], r["dice"]) for r in alone["rows"] if r["condition"] == "clean"]
    assert clean != [(r["case_id"], r["region"], r["dice"]) for r in first["rows"] if r["condition"] == "clean"]


def test_another_attack_setting_is_named_and_more_cases_resume(models, tmp_path: Path) -> None:
    sweep(models, tmp_path, cases=models["cases"][:2]).run()
    with pytest.raises(FingerprintMismatchError, match=r"conditions\[pgd@0.3\]\.attack\.steps: 3 stored, 5 now"):
        sweep(models, tmp_path, attacks=["fgsm", {"name": "pgd", "steps": 5}]).run()
    outcome = sweep(models, tmp_path).run()  # the same settings on one more case: the stored rows are kept
    assert {r["case_id"] for r in outcome["rows"]} == {"case0", "case1", "case2"}
    assert len(read_rows(tmp_path / "results.csv")) == 3 * 4 * 3  # cases x (clean, fgsm, pgd, noise) x regions


def test_results_without_a_fingerprint_are_not_resumed(models, tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("case_id,condition\n")
    with pytest.raises(FingerprintMismatchError, match=r"no fingerprint\.json"):
        sweep(models, tmp_path).run()


def test_conditions_get_unique_labels_and_duplicates_are_refused() -> None:
    net = small_conv_net(out_channels=4)
    specs = [{"name": "pgd", "steps": 5}, {"name": "pgd", "steps": 5, "loss": "segpgd"}, "fgsm"]
    labels = [c.label for c in attack_conditions(net, specs, [0.1], head="softmax", scheme=BRATS)]
    assert labels == ["pgd[loss=ce]@0.1", "pgd[loss=segpgd]@0.1", "fgsm@0.1"]
    with pytest.raises(ValueError, match="given twice"):
        attack_conditions(net, [{"name": "ifgsm"}, {"name": "ifgsm", "steps": 10}], [0.1], scheme=BRATS)
    with pytest.raises(ValueError, match=r"has no parameter \['stepz'\]"):
        attack_conditions(net, [{"name": "ifgsm", "stepz": 3}], [0.1], scheme=BRATS)
    with pytest.raises(ValueError, match="lists a budget twice"):
        attack_conditions(net, ["fgsm"], [0.1, 0.1], scheme=BRATS)
    named = attack_conditions(net, [{"name": "pgd", "label": "pgd-long", "steps": 20}, "pgd"], [0.1], scheme=BRATS)
    assert [c.label for c in named] == ["pgd-long@0.1", "pgd@0.1"]


def test_results_do_not_depend_on_case_order(models, tmp_path: Path) -> None:
    """Random starts and noise are seeded per case and condition, not by the position of a case in the run."""
    forward = sweep(models, tmp_path / "forward").run()
    reverse = sweep(models, tmp_path / "reverse", cases=models["cases"][::-1]).run()

    def table(outcome: dict) -> dict:
        return {(r["case_id"], r["condition"], r["region"]): (r["dice"], r["linf"], r["l2"]) for r in outcome["rows"]}

    assert table(forward) == table(reverse)


def test_noise_has_exactly_the_budget_in_the_threat_norm_and_stays_in_the_mask() -> None:
    x = torch.randn(2, 4, 6, 6, 6)
    x[:, :, :2] = 0  # background outside the brain
    for norm, eps in (("linf", 0.2), ("l2", 3.0)):
        threat = ThreatModel(norm, eps)
        a = threat.noise(x, torch.Generator().manual_seed(1))
        b = threat.noise(x, torch.Generator().manual_seed(1))
        torch.testing.assert_close(a, b)
        size = a.flatten(1).abs().amax(1) if norm == "linf" else a.flatten(1).norm(dim=1)
        torch.testing.assert_close(size, torch.full((2,), eps))
        assert (a[:, :, :2] == 0).all()


def test_the_worst_case_takes_the_lowest_dice_over_the_attacks_of_a_budget() -> None:
    def row(case: str, condition: str, kind: str, eps: float, dice: float) -> dict:
        return {"case_id": case, "condition": condition, "kind": kind, "eps": eps, "region": "WT", "dice": dice,
                "hd95": 10 * dice}  # fmt: skip

    rows = [
        row("a", "fgsm@0.1", "attack", 0.1, 0.5),
        row("a", "pgd@0.1", "attack", 0.1, 0.3),
        row("b", "fgsm@0.1", "attack", 0.1, 0.2),
        row("b", "pgd@0.1", "attack", 0.1, math.nan),
        row("a", "noise@0.1", "noise", 0.1, 0.0),  # noise is not an attack
        row("a", "fgsm@0.2", "attack", 0.2, 0.1),  # one attack at 0.2: no worst case there
    ]
    worst = {r["case_id"]: r for r in worst_case_rows(rows)}
    assert worst["a"]["dice"] == 0.3 and worst["a"]["worst_of"] == "pgd@0.1" and worst["a"]["hd95"] == 3.0
    assert worst["b"]["dice"] == 0.2 and {r["condition"] for r in worst.values()} == {"worst@0.1"}


class Rounded(torch.nn.Module):
    """A model whose input gradient is zero everywhere: the input is rounded before a real network."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


class Saturated(torch.nn.Module):
    """A model whose logits are scaled by 1000: the softmax saturates and the CE gradient vanishes."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1000 * self.inner(x)


def masked_sweep(models: dict, out: Path, wrapper: type, **kwargs) -> AttackSweep:
    inner = small_conv_net(out_channels=4)
    net = wrapper(inner)
    path = out.parent / f"{wrapper.__name__}.pt"
    torch.save(net.state_dict(), path)
    inner.load_state_dict(models["nets"]["a"].state_dict())
    torch.save(net.state_dict(), path)
    options = {"attacks": ["fgsm"], "eps": [0.4], "mask": "none", "num_examples": 0}
    return AttackSweep(net, path, SimpleInferer(), models["cases"], output_dir=out, **{**options, **kwargs})


def verdicts(outcome: dict) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for check in outcome["checks"]:
        out[check.name] = out.get(check.name, True) and check.passed
    return out


def test_a_saturated_softmax_fails_the_zero_gradient_share_check(models, tmp_path: Path) -> None:
    saturated = masked_sweep(models, tmp_path / "sat", Saturated).run()
    (check,) = [c for c in saturated["checks"] if c.name == "gradients"]
    assert not check.passed and "at least 50% of the attacked voxels" in check.detail
    plain = verdicts(sweep(models, tmp_path / "plain", attacks=["fgsm", {"name": "ifgsm", "steps": 5}]).run())
    assert plain["gradients"] is True and plain["noise_baseline"] is True and plain["attack_order"] is True


def test_an_attack_no_stronger_than_noise_is_flagged(models, tmp_path: Path) -> None:
    with pytest.warns(RuntimeWarning, match="zero gradient"):
        outcome = masked_sweep(models, tmp_path / "round", Rounded).run()
    assert verdicts(outcome)["noise_baseline"] is False


def test_more_steps_weaker_than_fewer_is_flagged(models, tmp_path: Path) -> None:
    crippled = {"name": "ifgsm", "steps": 2, "step_size": 1e-4}  # more steps than FGSM, but steps too small to move
    outcome = sweep(models, tmp_path, attacks=["fgsm", crippled]).run()
    (check,) = [c for c in outcome["checks"] if c.name == "attack_order"]
    assert not check.passed and "fgsm@0.3" in check.detail and "ifgsm@0.3" in check.detail


def test_a_transfer_stronger_than_white_box_is_flagged(models, tmp_path: Path) -> None:
    source = tmp_path / "source.pt"
    torch.save(models["nets"]["a"].state_dict(), source)  # the same weights without the rounding
    with pytest.warns(RuntimeWarning):
        outcome = masked_sweep(
            models, tmp_path / "transfer", Rounded, transfer_network=small_conv_net(out_channels=4),
            transfer_checkpoint=source,
        ).run()  # fmt: skip
    (check,) = [c for c in outcome["checks"] if c.name == "transfer"]
    assert not check.passed and "transfer-fgsm@0.4" in check.detail
    assert {s["condition"] for s in outcome["statistics"]} >= {"transfer-fgsm@0.4", "worst@0.4"}


def test_prefetching_yields_every_case_once_in_order_and_reads_the_next_one_ahead() -> None:
    import threading

    from robustseg.workflows.sweep import prefetched

    reads: list[tuple[int, str]] = []
    second_read = threading.Event()

    class Recording(list):
        def __getitem__(self, index):  # type: ignore[override]
            reads.append((index, threading.current_thread().name))
            if index == 2:
                second_read.set()
            return {"value": index * 10}

    out = []
    for index, item in prefetched(Recording(range(5)), [0, 2, 4]):
        out.append((index, item["value"]))
        if index == 0:
            assert second_read.wait(10)  # the next case is read while the caller still works on this one
    assert out == [(0, 0), (2, 20), (4, 40)]
    assert [i for i, _ in reads] == [0, 2, 4] and all(name != threading.main_thread().name for _, name in reads)
    assert list(prefetched(Recording(range(2)), [])) == []
