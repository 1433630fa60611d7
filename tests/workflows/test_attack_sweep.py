"""The attack sweep on a sigmoid multi-label model (TC, WT, ET channels, like the model zoo's BraTS bundle)."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SimpleInferer
from monai.metrics import DiceMetric
from PIL import Image
from workflow_helpers import nested_tumour, ringed_disc, small_conv_net

from robustseg.attacks import Attack
from robustseg.labels import BRATS, LabelScheme
from robustseg.workflows.attack_sweep import AttackSpec, AttackSweep


@pytest.fixture(scope="module")
def sigmoid_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, list[dict]]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = small_conv_net(out_channels=3)
    cases = [nested_tumour(rng) for _ in range(6)]
    images = torch.stack([c[0] for c in cases])
    targets = BRATS.region_targets_for_sigmoid(torch.stack([c[1] for c in cases]))
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    pos_weight = torch.tensor([8.0, 3.0, 8.0]).view(1, 3, 1, 1, 1)  # TC, WT, ET are small against the background
    for _ in range(150):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(images), targets, pos_weight=pos_weight).backward()
        optimiser.step()
    path = tmp_path_factory.mktemp("sigmoid") / "model.pt"
    torch.save(net.state_dict(), path)
    test = [
        {"image": image, "label": label, "case_id": f"case{i}"}
        for i, (image, label) in enumerate(nested_tumour(rng) for _ in range(4))
    ]
    return net, path, test


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_sweep_on_a_sigmoid_head_scores_regions_and_lowers_dice(sigmoid_model, tmp_path: Path) -> None:
    net, checkpoint, cases = sigmoid_model
    sweep = AttackSweep(
        net,
        checkpoint,
        SimpleInferer(),
        cases,
        ["fgsm", {"name": "ifgsm", "steps": 5}],
        [0.3],
        tmp_path,
        head="sigmoid",
        mask="none",
        num_examples=0,
    )
    outcome = sweep.run()
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 4 * 4 * 3  # cases x (clean, fgsm, ifgsm, noise) x regions
    clean = {(r["case_id"], r["region"]): float(r["dice"]) for r in rows if r["attack"] == "clean"}
    assert np.mean(list(clean.values())) > 0.7  # the toy model segments the nested regions
    # the clean Dice is the bundle's own per-channel metric: MONAI's DiceMetric on thresholded sigmoid channels
    images = torch.stack([c["image"] for c in cases])
    with torch.no_grad():
        channels = (torch.sigmoid(net(images)) >= 0.5).float()  # TC, WT, ET as the model zoo's postprocessing
    targets = BRATS.region_targets_for_sigmoid(torch.stack([c["label"] for c in cases]))
    reference = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(channels, targets)
    for i in range(len(cases)):
        for ch, region in enumerate(BRATS.sigmoid_regions):
            assert clean[(f"case{i}", region)] == pytest.approx(float(reference[i, ch]), abs=1e-6)
    attacked = [float(r["dice"]) for r in rows if r["attack"] == "ifgsm"]
    assert np.mean(attacked) < np.mean(list(clean.values())) - 0.1
    names = {c.name for c in outcome["checks"]}
    assert names >= {"probabilities", "gradients", "determinism", "attack_order", "noise_baseline"}
    assert {s["condition"] for s in outcome["statistics"]} == {"fgsm@0.3", "ifgsm@0.3", "noise@0.3", "worst@0.3"}


def test_a_sigmoid_head_is_scored_per_channel_not_from_a_rebuilt_class_map(tmp_path: Path) -> None:
    """Non-nested sigmoid channels: the class map rebuilt from them loses voxels; the channels themselves do not."""

    class Channels(torch.nn.Module):  # TC everywhere in the left half, WT nowhere: TC is not inside WT
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.full((x.shape[0], 3, *x.shape[2:]), -5.0) + 0 * x[:, :1]
            out[:, 0, :8] = 5.0
            return out

    net = Channels()
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    label = torch.zeros(1, 16, 16, 16, dtype=torch.long)
    label[0, :8] = 1  # necrotic core in the left half: TC and WT there, ET nowhere
    cases = [{"image": torch.ones(4, 16, 16, 16), "label": label, "case_id": "c0"}]
    sweep = AttackSweep(
        net, checkpoint, SimpleInferer(), cases, ["fgsm"], [0.1], tmp_path / "out", head="sigmoid", mask="none",
        num_examples=0,
    )  # fmt: skip
    rows = sweep.run()["rows"]
    clean = {r["region"]: r["dice"] for r in rows if r["condition"] == "clean"}
    assert clean["TC"] == 1.0  # the TC channel is exactly the truth's TC
    assert clean["WT"] == 0.0 and clean["ET"] == 1.0  # WT missed; ET empty in both


def test_attack_specs_are_checked_before_compute() -> None:
    with pytest.raises(ValueError, match="unknown attack 'cw'"):
        AttackSpec.parse("cw")
    with pytest.raises(ValueError, match="needs attack 'tifgsm'"):
        AttackSpec.parse({"name": "ifgsm", "target": "erase_tumour"})
    spec = AttackSpec.parse({"name": "tifgsm", "target": "enhancing_as_oedema"})
    assert spec.base_label == "tifgsm-enhancing_as_oedema"


def test_a_resumed_sweep_reads_its_examples_back_instead_of_attacking_again(
    sigmoid_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, checkpoint, cases = sigmoid_model
    with_meta = [  # BraTS 2018-2022 cases: enhancing tumour is 4 in their files, 3 in the model's classes
        {
            **c,
            "image": MetaTensor(c["image"], affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))),
            "layout": "brats2021",
        }
        for c in cases
    ]

    def sweep() -> AttackSweep:
        return AttackSweep(
            net,
            checkpoint,
            SimpleInferer(),
            with_meta[:2],
            [{"name": "ifgsm", "steps": 2}],
            [0.3],
            tmp_path,
            head="sigmoid",
            mask="none",
            num_examples=1,
        )

    first = sweep().run()["examples"]
    saved = tmp_path / "examples" / "case0_ifgsm@0.3_adversarial.nii.gz"
    assert nib.load(saved).affine == pytest.approx(np.diag([2.0, 2.0, 3.0, 1.0]))  # the input's affine
    stored = np.asarray(nib.load(str(saved).replace("_adversarial.nii", "_pred_adversarial.nii")).dataobj)
    canonical = first[0]["pred_adversarial"]
    assert 3 in canonical  # the example has enhancing tumour ...
    np.testing.assert_array_equal(stored, np.where(canonical == 3, 4, canonical))  # ... saved as the input's 4
    calls = []
    monkeypatch.setattr(Attack, "__call__", lambda *a, **k: calls.append(a) or pytest.fail("attacked again"))
    second = sweep().run()["examples"]
    assert not calls and len(first) == len(second) == 1
    for key in ("adversarial", "pred_adversarial", "pred_clean", "image"):
        np.testing.assert_allclose(second[0][key], first[0][key], atol=1e-6)
    saved.unlink()  # an example lost from disk is attacked again; its rows are not duplicated
    monkeypatch.undo()
    third = sweep().run()["examples"]
    np.testing.assert_allclose(third[0]["adversarial"], first[0]["adversarial"], atol=1e-6)
    assert len(read_rows(tmp_path / "results.csv")) == 2 * 3 * 3  # cases x (clean, ifgsm, noise) x regions


def test_examples_of_a_2d_rgb_model_are_saved_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2-D examples: the single-channel prediction map is written (MONAI's SaveImage cannot) and both read back."""
    torch.manual_seed(0)
    net = small_conv_net(out_channels=3, in_channels=3, spatial_dims=2)
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    rng = np.random.default_rng(2)
    affine = torch.diag(torch.tensor([0.5, 0.25, 1.0, 1.0]))
    cases = [{"image": MetaTensor(i, affine=affine), "label": lab, "case_id": "img0"} for i, lab in [ringed_disc(rng)]]
    scheme = LabelScheme(("background", "disc", "ring"), ignore_index=255)

    def sweep() -> AttackSweep:
        return AttackSweep(
            net, checkpoint, SimpleInferer(), cases, ["fgsm"], [0.1], tmp_path / "out", scheme=scheme, mask="none",
            num_examples=1,
        )  # fmt: skip

    first = sweep().run()["examples"]
    pred = nib.load(tmp_path / "out" / "examples" / "img0_fgsm@0.1_pred_adversarial.nii.gz")
    assert pred.shape == (24, 24) and pred.affine[:2, :2] == pytest.approx(np.diag([0.5, 0.25]))
    np.testing.assert_array_equal(np.asarray(pred.dataobj), first[0]["pred_adversarial"])
    # PNG copies to look at: the class map in the palette (VOC's colours for the values it leaves out), and the image
    # in 8 bits, stretched to its own range since this model's input has no clip bounds
    png = Image.open(tmp_path / "out" / "examples" / "img0_fgsm@0.1_pred_adversarial.png")
    assert png.mode == "P" and np.array_equal(np.asarray(png), first[0]["pred_adversarial"])
    assert np.asarray(png.getpalette()).reshape(-1, 3)[1].tolist() == [128, 0, 0]  # VOC's class 1
    picture = np.asarray(Image.open(tmp_path / "out" / "examples" / "img0_fgsm@0.1_adversarial.png"))
    adversarial = first[0]["adversarial"].transpose(1, 2, 0)
    span = adversarial.max() - adversarial.min()
    np.testing.assert_allclose(picture / 255.0, (adversarial - adversarial.min()) / span, atol=0.5 / 255 + 1e-6)
    monkeypatch.setattr(Attack, "__call__", lambda *a, **k: pytest.fail("attacked again"))
    second = sweep().run()["examples"]
    assert second[0]["adversarial"].shape == (3, 24, 24)
    for key in ("adversarial", "pred_adversarial"):
        np.testing.assert_allclose(second[0][key], first[0][key], atol=1e-6)


def test_natural_image_sweep_scores_iou_per_class_and_the_case_miou(tmp_path: Path) -> None:
    """metric="iou": per-class IoU and a per-case mIoU row, by hand; no HD95; tests and report on IoU."""
    from robustseg.evaluation.report import write_html_report

    torch.manual_seed(0)
    net = small_conv_net(out_channels=3, in_channels=3, spatial_dims=2)
    checkpoint = tmp_path / "model.pt"
    torch.save(net.state_dict(), checkpoint)
    rng = np.random.default_rng(3)
    pairs = [ringed_disc(rng) for _ in range(3)]
    cases = [{"image": image, "label": label, "case_id": f"img{k}"} for k, (image, label) in enumerate(pairs)]
    names = ("background", "disc", "ring")
    scheme = LabelScheme(names, regions={n: (i,) for i, n in enumerate(names)}, ignore_index=255)  # as 2-D datasets
    sweep = AttackSweep(
        net, checkpoint, SimpleInferer(), cases, ["fgsm", {"name": "ifgsm", "steps": 2}], [0.1], tmp_path / "out",
        scheme=scheme, mask="none", num_examples=0, metric="iou", hd95=False, empty_policy="ignore",
    )  # fmt: skip
    outcome = sweep.run()
    assert read_rows(tmp_path / "out" / "results.csv")[0].keys() >= {"iou", "dice", "hd95"}
    clean = {(r["case_id"], r["region"]): r for r in outcome["rows"] if r["condition"] == "clean"}
    for case in cases:
        with torch.no_grad():
            pred = net(case["image"][None]).argmax(1)[0].numpy()
        label = case["label"][0].numpy()
        scored = label != 255
        ious = []
        for c, name in enumerate(scheme.class_names):
            p, g = (pred == c) & scored, (label == c) & scored
            union = (p | g).sum()
            expected = (p & g).sum() / union if union else float("nan")
            got = clean[(case["case_id"], name)]["iou"]
            assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected)
            assert np.isnan(clean[(case["case_id"], name)]["hd95"])
            if union:
                ious.append(expected)
        assert clean[(case["case_id"], "mIoU")]["iou"] == pytest.approx(np.mean(ious))
    stats = {(s["region"], s["condition"]): s for s in outcome["statistics"]}
    assert ("mIoU", "fgsm@0.1") in stats and ("mIoU", "worst@0.1") in stats
    attacked = [r["iou"] for r in outcome["rows"] if r["condition"] == "fgsm@0.1" and r["region"] == "mIoU"]
    assert stats[("mIoU", "fgsm@0.1")]["mean_condition"] == pytest.approx(np.mean(attacked))
    html = write_html_report(
        tmp_path / "report", outcome["rows"], outcome["statistics"], outcome["checks"], [], outcome["settings"]
    ).read_text()
    assert "IoU against eps" in html and "mean clean IoU" in html and "lowered IoU most" in html
