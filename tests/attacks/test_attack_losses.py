"""Per-voxel losses against independent references: torch's CE and BCE, a hand cosine, a hand soft Dice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustseg.attacks import LOSSES, cospgd_weights, get_loss, segpgd_weights
from robustseg.labels import BRATS, LabelScheme

VOC_LIKE = LabelScheme(class_names=("background", "a", "b"), ignore_index=255)
SHAPES = {2: (2, 3, 6, 5), 3: (2, 3, 4, 5, 3)}


def _logits_and_labels(dims: int, channels: int = 3, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(dims)
    shape = SHAPES[dims]
    logits = torch.randn((shape[0], channels, *shape[2:]), generator=g) * 2
    labels = torch.randint(0, classes, (shape[0], 1, *shape[2:]), generator=g)
    return logits, labels


@pytest.mark.parametrize("dims", [2, 3])
def test_ce_map_equals_torch_cross_entropy_and_skips_ignored(dims: int) -> None:
    logits, labels = _logits_and_labels(dims)
    out = get_loss("ce")(logits, labels)
    assert out.shape == labels[:, 0].shape
    torch.testing.assert_close(out, F.cross_entropy(logits, labels[:, 0], reduction="none"))
    labels[:, :, 0] = 255
    out = get_loss("ce")(logits, labels, scheme=VOC_LIKE)
    assert (out[:, 0] == 0).all()
    torch.testing.assert_close(
        out[:, 1:], F.cross_entropy(logits, labels[:, 0], reduction="none", ignore_index=255)[:, 1:]
    )


@pytest.mark.parametrize("dims", [2, 3])
def test_bce_map_on_a_tc_wt_et_sigmoid_head(dims: int) -> None:
    logits, labels = _logits_and_labels(dims, channels=3, classes=4)  # BraTS classes 0..3, head TC, WT, ET
    out = get_loss("bce")(logits, labels, head="sigmoid", scheme=BRATS)
    y = labels[:, 0]
    targets = torch.stack([(y == 1) | (y == 3), y > 0, y == 3], dim=1).float()
    expected = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    torch.testing.assert_close(out, expected)
    for name in ("dice", "segpgd", "cospgd"):
        other = get_loss(name)(logits, labels, head="sigmoid", scheme=BRATS, step=1, total_steps=4)
        assert other.shape == y.shape and torch.isfinite(other).all()


@pytest.mark.parametrize("dims", [2, 3])
def test_segpgd_weights_move_from_correct_only_to_balanced(dims: int) -> None:
    logits, labels = _logits_and_labels(dims)
    correct = logits.argmax(dim=1) == labels[:, 0]
    assert correct.any() and (~correct).any()
    w0 = segpgd_weights(logits, labels, step=0, total_steps=10)
    torch.testing.assert_close(w0, correct.float())
    w_end = segpgd_weights(logits, labels, step=10, total_steps=10)
    torch.testing.assert_close(w_end, torch.full_like(w0, 0.5))
    w_mid = segpgd_weights(logits, labels, step=4, total_steps=10)  # lambda = 0.2
    torch.testing.assert_close(w_mid, torch.where(correct, 0.8, 0.2))
    targeted = segpgd_weights(logits, labels, step=0, total_steps=10, targeted=True)
    torch.testing.assert_close(targeted, (~correct).float())  # targeted: the voxels not yet at the target
    ce = F.cross_entropy(logits, labels[:, 0], reduction="none")
    torch.testing.assert_close(get_loss("segpgd")(logits, labels, step=4, total_steps=10), w_mid * ce)


@pytest.mark.parametrize("dims", [2, 3])
def test_cospgd_weight_is_the_detached_cosine_with_the_one_hot_target(dims: int) -> None:
    logits, labels = _logits_and_labels(dims)
    p = torch.softmax(logits, dim=1)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    cosine = (p * onehot).sum(1) / (p.norm(dim=1) * onehot.norm(dim=1))
    torch.testing.assert_close(cospgd_weights(logits, labels), cosine)
    torch.testing.assert_close(cospgd_weights(logits, labels, targeted=True), 1 - cosine)
    leaf = logits.clone().requires_grad_(True)
    assert not cospgd_weights(leaf, labels).requires_grad
    ce = F.cross_entropy(logits, labels[:, 0], reduction="none")
    torch.testing.assert_close(get_loss("cospgd")(logits, labels), cosine * ce)


@pytest.mark.parametrize("dims", [2, 3])
def test_soft_dice_is_per_case_and_differentiable(dims: int) -> None:
    logits, labels = _logits_and_labels(dims)
    perfect = F.one_hot(labels[:, 0], 3).movedim(-1, 1).float() * 40 - 20
    out = get_loss("dice")(perfect, labels)
    assert out.shape == labels[:, 0].shape and out.abs().max() < 1e-4
    leaf = logits.clone().requires_grad_(True)
    out = get_loss("dice")(leaf, labels)
    p = torch.softmax(logits, dim=1)[:, 1:]
    g = F.one_hot(labels[:, 0], 3).movedim(-1, 1)[:, 1:].float()
    dims_ = tuple(range(2, logits.ndim))
    hand = 1 - ((2 * (p * g).sum(dims_) + 1e-5) / (p.sum(dims_) + g.sum(dims_) + 1e-5)).mean(1)
    torch.testing.assert_close(out.reshape(2, -1).mean(1), hand)
    (grad,) = torch.autograd.grad(out.sum(), leaf)
    assert grad.abs().sum() > 0


def test_registry_names_and_errors() -> None:
    assert set(LOSSES) == {"ce", "bce", "dice", "segpgd", "cospgd", "margin"}
    with pytest.raises(
        ValueError, match=r"unknown loss .focal.; choose one of \[.bce., .ce., .cospgd., .dice., .margin., .segpgd.\]"
    ):
        get_loss("focal")
    logits, labels = _logits_and_labels(2)
    with pytest.raises(ValueError, match="use 'bce' for a sigmoid head"):
        get_loss("ce")(logits, labels, head="sigmoid", scheme=BRATS)
    with pytest.raises(ValueError, match="use 'ce' for a softmax head"):
        get_loss("bce")(logits, labels, head="softmax")
    with pytest.raises(ValueError, match="sigmoid_regions"):
        get_loss("bce")(logits, labels, head="sigmoid", scheme=VOC_LIKE)
    with pytest.raises(ValueError, match=r"labels must be .* but are \(2, 1, 6, 4\)"):
        get_loss("ce")(logits, labels[..., :4])


def test_margin_loss_by_hand_untargeted_targeted_and_ignored() -> None:
    from robustseg.attacks.losses import margin_map
    from robustseg.labels import LabelScheme

    # two voxels, three classes: voxel 0 right (z_y = 3, best other 1), voxel 1 wrong (z_y = 0, best other 2)
    logits = torch.tensor([[[3.0, 0.0], [1.0, 2.0], [-1.0, 1.0]]])[..., None]  # (1, 3, 2, 1)
    labels = torch.tensor([[[0, 0]]])[..., None]  # (1, 1, 2, 1)
    untargeted = margin_map(logits, labels)
    assert untargeted[0, :, 0].tolist() == [-2.0, 0.0]  # min(1 - 3, 0), min(2 - 0, 0)
    targeted = margin_map(logits, labels, targeted=True)
    assert targeted[0, :, 0].tolist() == [0.0, 2.0]  # max(1 - 3, 0), max(2 - 0, 0)
    scheme = LabelScheme(class_names=("a", "b", "c"), ignore_index=255)
    ignored = margin_map(logits, torch.tensor([[[0, 255]]])[..., None], scheme=scheme, targeted=True)
    assert ignored[0, :, 0].tolist() == [0.0, 0.0]
    assert "margin" in LOSSES


def test_margin_loss_keeps_its_gradient_when_logits_are_scaled_up() -> None:
    from robustseg.attacks.losses import cross_entropy_map, margin_map

    logits = torch.tensor([[[4.0], [1.0]]])[..., None].requires_grad_(True)  # (1, 2, 1, 1), right by 3
    labels = torch.zeros((1, 1, 1, 1), dtype=torch.long)
    for scale, loss in ((1.0, margin_map), (20.0, margin_map), (20.0, cross_entropy_map)):
        (grad,) = torch.autograd.grad(loss(logits * scale, labels).sum(), logits)
        norm = float(grad.abs().sum())
        if loss is margin_map:
            assert norm == pytest.approx(2.0 * scale)  # d(z_1 - z_0) grows with the scale
        else:
            assert norm < 1e-20  # the softmax saturates: defensive distillation's masked gradient
