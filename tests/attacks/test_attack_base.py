"""Shared behaviour of every attack: the threat model holds, seeds, model state, inferers, MetaTensors, checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from attack_helpers import BLOBS, SIZE, blob_batch, conv_net
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from torch import nn

from robustseg.attacks import FGSM, Attack, IterativeFGSM, TargetedIterativeFGSM, ThreatModel, per_sample_norm
from robustseg.labels import BRATS

TOL = 1e-5
EPS = {"linf": 0.1, "l2": 1.0}

FACTORIES: dict[str, Callable[..., Attack]] = {
    "fgsm": lambda net, threat, **kw: FGSM(net, threat, **kw),
    "ifgsm": lambda net, threat, **kw: IterativeFGSM(net, threat, steps=3, **kw),
    "pgd_segpgd": lambda net, threat, **kw: IterativeFGSM(
        net, threat, steps=3, random_start=True, restarts=2, loss="segpgd", **kw
    ),
    "cospgd": lambda net, threat, **kw: IterativeFGSM(net, threat, steps=2, random_start=True, loss="cospgd", **kw),
    "tifgsm": lambda net, threat, **kw: TargetedIterativeFGSM(net, threat, steps=3, **kw),
}


def _data(dims: int, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return blob_batch(dims, n, torch.Generator().manual_seed(seed))


def _net(dims: int, out_channels: int = 2) -> nn.Module:
    torch.manual_seed(dims)
    return conv_net(dims, out_channels=out_channels)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_result_respects_the_threat_model(name: str, dims: int, norm: str) -> None:
    lo, hi = [-0.4, -0.8], [1.0, 0.7]
    threat = ThreatModel(norm, EPS[norm], clip_min=lo, clip_max=hi)
    images, labels = _data(dims)
    images = torch.stack([images[:, c].clamp(lo[c], hi[c]) for c in range(2)], dim=1)
    attack = FACTORIES[name](_net(dims), threat, scheme=BLOBS)
    result = attack(images, labels)
    delta = result.adversarial - images
    assert result.adversarial.shape == images.shape
    torch.testing.assert_close(result.perturbation, delta)
    assert (per_sample_norm(delta, norm) <= threat.eps + TOL).all()
    assert (delta * (1 - threat.mask_for(images)) == 0).all()
    for c in range(2):
        assert result.adversarial[:, c].min() >= lo[c] - TOL and result.adversarial[:, c].max() <= hi[c] + TOL
    torch.testing.assert_close(result.linf, delta.flatten(1).abs().amax(1))
    torch.testing.assert_close(result.l2, delta.flatten(1).norm(dim=1))
    assert (result.linf > 0).all() and torch.isfinite(result.psnr_db).all()
    assert result.loss_history.shape == (getattr(attack, "steps", 1) + 1, 2)
    assert result.targeted == (name == "tifgsm")


@pytest.mark.parametrize("dims", [2, 3])
def test_same_seed_same_result_and_other_seed_differs(dims: int) -> None:
    images, labels = _data(dims)
    net = _net(dims)
    threat = ThreatModel("linf", 0.1)
    a = IterativeFGSM(net, threat, steps=2, random_start=True, seed=3, scheme=BLOBS)(images, labels)
    b = IterativeFGSM(net, threat, steps=2, random_start=True, seed=3, scheme=BLOBS)(images, labels)
    attack = IterativeFGSM(net, threat, steps=2, random_start=True, seed=4, scheme=BLOBS)
    c = attack(images, labels)
    assert torch.equal(a.adversarial, b.adversarial)
    assert not torch.equal(a.adversarial, c.adversarial)
    assert torch.equal(attack.set_random_state(3)(images, labels).adversarial, a.adversarial)  # returns self
    assert torch.equal(attack(images, labels).adversarial, a.adversarial)  # a fresh generator on every call


class _Recorder(nn.Module):
    """Conv net that records its training flag at each forward and can fail on a given call."""

    def __init__(self, dims: int, fail_at: int | None = None) -> None:
        super().__init__()
        self.body = conv_net(dims)
        self.norm = nn.BatchNorm2d(2) if dims == 2 else nn.BatchNorm3d(2)
        self.seen: list[bool] = []
        self.fail_at = fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        if self.fail_at is not None and len(self.seen) >= self.fail_at:
            raise RuntimeError("boom")
        return self.norm(self.body(x))


@pytest.mark.parametrize("dims", [2, 3])
def test_model_mode_and_parameter_grads_are_untouched(dims: int) -> None:
    images, labels = _data(dims)
    net = _Recorder(dims)
    net.train()
    net.body[2].eval()  # a submodule in its own mode stays so
    frozen = net.body[0].bias
    frozen.requires_grad_(False)
    given = torch.full_like(net.body[4].weight, 7.0)
    net.body[4].weight.grad = given.clone()
    running_mean = net.norm.running_mean.clone()
    IterativeFGSM(net, ThreatModel("linf", 0.1), steps=2, scheme=BLOBS)(images, labels)
    assert net.seen and not any(net.seen)  # eval mode during the attack
    assert net.training and net.body[0].training and not net.body[2].training
    torch.testing.assert_close(net.norm.running_mean, running_mean)  # no batch statistics were updated
    assert not frozen.requires_grad
    for name, p in net.named_parameters():
        if p is not frozen:
            assert p.requires_grad, name
        if p is net.body[4].weight:
            torch.testing.assert_close(p.grad, given)
        else:
            assert p.grad is None, name


def test_model_state_is_restored_after_an_exception() -> None:
    images, labels = _data(2)
    net = _Recorder(2, fail_at=2)
    net.train()
    with pytest.raises(RuntimeError, match="boom"):
        IterativeFGSM(net, ThreatModel("linf", 0.1), steps=3, scheme=BLOBS)(images, labels)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


class _HandSliding:
    """A hand-rolled sliding window without overlap: run each window, paste the logits back."""

    def __init__(self, roi: tuple[int, ...]) -> None:
        self.roi = roi

    def __call__(self, inputs: torch.Tensor, network: nn.Module) -> torch.Tensor:
        out: torch.Tensor | None = None
        starts = torch.cartesian_prod(*[torch.arange(0, s, r) for s, r in zip(inputs.shape[2:], self.roi, strict=True)])
        for start in starts.reshape(-1, len(self.roi)).tolist():
            window = (slice(None), slice(None), *[slice(b, b + r) for b, r in zip(start, self.roi, strict=True)])
            logits = network(inputs[window])
            if out is None:
                out = logits.new_zeros((inputs.shape[0], logits.shape[1], *inputs.shape[2:]))
            out[window] = logits
        assert out is not None
        return out


@pytest.mark.parametrize("dims", [2, 3])
def test_sliding_window_inferer_is_attacked_end_to_end(dims: int) -> None:
    images, labels = _data(dims)
    torch.manual_seed(0)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    net = nn.Sequential(conv(2, 4, 3, padding=1), nn.Tanh(), conv(4, 2, 3, padding=1))
    roi = tuple(s // 2 for s in SIZE[dims])
    threat = ThreatModel("linf", 0.1)
    monai_sw = SlidingWindowInferer(roi_size=roi, sw_batch_size=3, overlap=0.0, mode="constant")
    by_monai = FGSM(net, threat, inferer=monai_sw, scheme=BLOBS)
    by_hand = FGSM(net, threat, inferer=_HandSliding(roi), scheme=BLOBS)
    grad = by_monai.gradient(images, labels)
    torch.testing.assert_close(grad, by_hand.gradient(images, labels))
    assert not torch.allclose(grad, FGSM(net, threat, scheme=BLOBS).gradient(images, labels))  # windows matter
    mask = threat.mask_for(images).expand_as(images).bool()
    assert (grad[mask] != 0).all()  # the gradient reaches every voxel of the brain, in every window
    result = by_monai(images, labels)
    torch.testing.assert_close(result.adversarial, by_hand(images, labels).adversarial)
    torch.testing.assert_close(result.perturbation.abs()[mask], torch.full((int(mask.sum()),), threat.eps))


@pytest.mark.parametrize("n", [1, 3])
def test_any_batch_size_and_metatensor_keeps_its_metadata(n: int) -> None:
    images, labels = _data(3, n=n)
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    meta_images = MetaTensor(images, affine=affine, meta={"filename_or_obj": "case.nii.gz"})
    result = IterativeFGSM(_net(3), ThreatModel("l2", 1.0), steps=2, scheme=BLOBS)(meta_images, labels[:, 0])
    assert isinstance(result.adversarial, MetaTensor)
    torch.testing.assert_close(result.adversarial.affine, affine.double())
    assert result.adversarial.meta["filename_or_obj"] == "case.nii.gz"
    assert result.linf.shape == result.l2.shape == result.psnr_db.shape == (n,)
    assert not torch.equal(result.adversarial.as_tensor(), images)


def test_psnr_is_over_the_mask_and_inf_when_unchanged() -> None:
    images, labels = _data(2)
    nothing = ThreatModel("linf", 0.1, mask=torch.zeros(SIZE[2]))
    result = FGSM(_net(2), nothing, scheme=BLOBS)(images, labels)
    assert (result.perturbation == 0).all() and torch.isinf(result.psnr_db).all()
    threat = ThreatModel("linf", 0.1)
    result = FGSM(_net(2), threat, scheme=BLOBS)(images, labels)
    mask = threat.mask_for(images).expand_as(images).bool()
    for i in range(2):
        clean, change = images[i][mask[i]], result.perturbation[i][mask[i]]
        peak = clean.max() - clean.min()
        expected = 10 * torch.log10(peak**2 / (change.double() ** 2).mean())
        assert abs(float(result.psnr_db[i]) - float(expected)) < 1e-3


def test_sigmoid_head_with_brats_regions() -> None:
    images, _ = _data(3)
    labels = torch.randint(0, 4, (2, 1, *SIZE[3]), generator=torch.Generator().manual_seed(0))
    net = _net(3, out_channels=3)
    threat = ThreatModel("linf", 0.1)
    for loss in ("bce", "dice", "segpgd", "cospgd"):
        result = IterativeFGSM(net, threat, steps=2, head="sigmoid", scheme=BRATS, loss=loss)(images, labels)
        assert (result.linf <= 0.1 + TOL).all() and (result.linf > 0).all(), loss
    result = TargetedIterativeFGSM(net, threat, steps=2, head="sigmoid", scheme=BRATS)(images, labels)
    assert result.targeted


def test_audit_warns_on_probabilities_and_zero_gradients() -> None:
    images, labels = _data(2)
    probs = nn.Sequential(_net(2), nn.Softmax(dim=1))
    with pytest.warns(RuntimeWarning, match="seems to return probabilities"):
        FGSM(probs, ThreatModel("linf", 0.1), scheme=BLOBS)(images, labels)

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x[:, 0] * 0 + 3.0, x[:, 0] * 0 - 2.0], dim=1)

    with pytest.warns(RuntimeWarning, match="zero gradient on every attacked voxel of case\\(s\\) \\[0, 1\\]"):
        FGSM(Constant(), ThreatModel("linf", 0.1), scheme=BLOBS)(images, labels)


def test_bad_arguments_raise_clear_errors() -> None:
    net, threat = _net(2), ThreatModel("linf", 0.1)
    images, labels = _data(2)
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: FGSM(net, threat, loss="focal"), "unknown loss 'focal'; choose one of"),
        (lambda: FGSM(net, threat, head="softmax2"), "head must be one of"),
        (lambda: FGSM(net, threat, head="sigmoid", loss="ce"), "loss 'ce' does not fit a sigmoid head; use 'bce'"),
        (lambda: FGSM(net, threat, head="sigmoid", scheme=BLOBS), "sigmoid_regions"),
        (lambda: FGSM(net, 0.1), "threat must be a ThreatModel"),  # type: ignore[arg-type]
        (lambda: IterativeFGSM(net, threat, steps=0), "steps must be an integer >= 1"),
        (lambda: IterativeFGSM(net, threat, step_size=-1.0), "step_size must be > 0"),
        (lambda: IterativeFGSM(net, threat, restarts=3), "set random_start=True"),
        (
            lambda: FGSM(net, threat, scheme=BLOBS)(images, labels[..., :5]),
            r"labels must be a class map .* \(2, 1, 24, 5\)",
        ),
        (lambda: FGSM(net, threat, scheme=BLOBS)(images[0], labels), "2 or 3 spatial dims"),
        (lambda: FGSM(net, threat, scheme=BLOBS)(images, labels, labels[:1]), "target must be a class map"),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match=message):
            build()


def test_turning_final_scoring_off_gives_the_same_adversarial_input_with_one_forward_fewer() -> None:
    from robustseg.attacks import FGSM, IterativeFGSM, ThreatModel

    images, labels = blob_batch(2, 2, torch.Generator().manual_seed(0))
    net = conv_net(2)
    calls = {"n": 0}
    net.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    threat = ThreatModel("linf", 0.1, mask="none")
    for attack in (
        FGSM(net, threat, scheme=BLOBS),
        IterativeFGSM(net, threat, steps=3, random_start=True, scheme=BLOBS),
    ):
        calls["n"] = 0
        scored = attack(images, labels)
        with_score = calls["n"]
        attack.score_final, calls["n"] = False, 0
        unscored = attack(images, labels)
        assert calls["n"] == with_score - 1
        assert torch.equal(scored.adversarial, unscored.adversarial)
        assert unscored.loss_history.shape == scored.loss_history.shape


def test_temperature_attacks_logits_over_t_as_if_the_model_were_scaled_down() -> None:
    from robustseg.attacks import IterativeFGSM, ThreatModel
    from robustseg.conditions.attack import AttackSpec

    images, labels = blob_batch(2, 2, torch.Generator().manual_seed(1))
    net = conv_net(2)
    hot = nn.Sequential(net, Scale(8.0))  # a distilled-like model: logits 8 times larger
    threat = ThreatModel("linf", 0.1, mask="none")
    plain = IterativeFGSM(net, threat, steps=3, scheme=BLOBS)(images, labels)
    cooled = IterativeFGSM(hot, threat, steps=3, scheme=BLOBS, temperature=8.0)
    result = cooled(images, labels)
    assert torch.equal(result.adversarial, plain.adversarial)
    assert torch.allclose(result.logits, 8.0 * plain.logits, atol=1e-5)  # the model's own logits are returned
    assert cooled.share_key == ("ce@T=8", None)
    assert IterativeFGSM(net, threat, scheme=BLOBS).share_key == ("ce", None)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        IterativeFGSM(net, threat, scheme=BLOBS, temperature=0.0)
    spec = AttackSpec.parse({"name": "ifgsm", "temperature": 8.0})
    assert spec.effective("ce")["temperature"] == 8.0
    assert "temperature" not in AttackSpec.parse({"name": "ifgsm", "temperature": 1}).effective("ce")


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor
