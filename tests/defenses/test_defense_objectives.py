"""The defences' training objectives, on tiny networks: hand-checked losses, refused settings, seeding, modes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustseg.defenses import AdversarialTraining, AtTemperature, Distillation, distillation_kl, trades_kl
from robustseg.labels import LabelScheme

BLOBS = LabelScheme(class_names=("background", "blob"))
VOC_LIKE = LabelScheme(class_names=("background", "a", "b"), ignore_index=255)


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the trained module under ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the attack must run on the unwrapped module, not through the wrapper")


def bn_net(channels: int = 2, classes: int = 2) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, classes, 1))


def batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn((n, 2, 12, 12), generator=g)
    labels = (images[:, :1] > 0.3).long()
    return images, labels


def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels[:, 0])


def plain(x: torch.Tensor, network: nn.Module) -> torch.Tensor:
    return network(x)


# ---------------------------------------------------------------------------------------------------- losses


def test_trades_term_is_zero_when_the_outputs_agree_and_matches_torch_kl_otherwise() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.randn((2, 3, 5, 5), generator=g)
    assert float(trades_kl(clean, clean.clone())) == pytest.approx(0.0, abs=1e-7)
    adversarial = clean + torch.randn((2, 3, 5, 5), generator=g)
    expected = F.kl_div(F.log_softmax(adversarial, 1), F.log_softmax(clean, 1), log_target=True, reduction="none")
    assert float(trades_kl(clean, adversarial)) == pytest.approx(float(expected.sum(1).mean()), rel=1e-5)
    valid = torch.zeros((2, 5, 5), dtype=torch.bool)
    valid[0, :2] = True
    masked = expected.sum(1)[valid].mean()
    assert float(trades_kl(clean, adversarial, valid)) == pytest.approx(float(masked), rel=1e-5)


def test_distillation_kl_by_hand_is_t_squared_times_the_soft_target_kl() -> None:
    student = torch.tensor([[[[1.0]], [[3.0]]]])  # one voxel, two classes
    teacher = torch.tensor([[[[4.0]], [[0.0]]]])
    t = 2.0
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)  # teacher / T
    q = torch.softmax(torch.tensor([0.5, 1.5]), 0)  # student / T
    by_hand = t * t * float((p * (p / q).log()).sum())
    assert float(distillation_kl(student, teacher, t)) == pytest.approx(by_hand, rel=1e-6)
    assert float(distillation_kl(teacher.clone(), teacher, 7.0)) == pytest.approx(0.0, abs=1e-7)


def test_distillation_kl_leaves_out_ignored_voxels_and_refuses_another_network() -> None:
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn((1, 3, 4, 4), generator=g), torch.randn((1, 3, 4, 4), generator=g)
    labels = torch.zeros((1, 1, 4, 4), dtype=torch.long)
    labels[..., 0, :] = 255
    objective = Distillation(nn.Identity(), temperature=3.0, scheme=VOC_LIKE)
    loss, _ = objective(
        nn.Identity(), lambda x, n: student if n is not objective.teacher else teacher, ce, student, labels
    )
    valid = labels[:, 0] != 255
    assert float(loss) == pytest.approx(float(distillation_kl(student, teacher, 3.0, valid)), rel=1e-6)
    assert float(loss) != pytest.approx(float(distillation_kl(student, teacher, 3.0)), rel=1e-3)
    with pytest.raises(ValueError, match="same bundle"):
        distillation_kl(student, teacher[:, :2], 3.0)


def test_at_temperature_scales_the_logits_before_the_loss() -> None:
    logits, labels = torch.randn((2, 2, 6, 6)), torch.randint(0, 2, (2, 1, 6, 6))
    assert float(AtTemperature(ce, 4.0)(logits, labels)) == pytest.approx(float(ce(logits / 4.0, labels)))


# ---------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "eps must be a finite number > 0"),
        ({"eps": -0.1}, "eps must be a finite number > 0"),
        ({"eps": math.nan}, "eps must be a finite number > 0"),
        ({"steps": 0}, r"steps \(k\) must be an integer >= 1"),
        ({"steps": 2.5}, r"steps \(k\) must be an integer >= 1"),
        ({"method": "fast", "steps": 3}, "takes one step"),
        ({"ratio": -0.1}, r"ratio .* must be in \[0, 1\]"),
        ({"ratio": 1.5}, r"ratio .* must be in \[0, 1\]"),
        ({"trades_beta": -1.0}, "trades_beta must be a finite number >= 0"),
        ({"step_size": 0.0}, "step_size must be > 0"),
        ({"method": "madry"}, "method must be one of"),
    ],
)
def test_bad_adversarial_training_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdversarialTraining(**{"method": "pgd", "eps": 0.1, **kwargs})


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, "20", True])
def test_bad_temperatures_are_refused(temperature: object) -> None:
    with pytest.raises(ValueError, match="temperature T must be"):
        Distillation(nn.Identity(), temperature=temperature)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature T must be"):
        AtTemperature(ce, temperature)  # type: ignore[arg-type]


def test_defaults_follow_the_recipes() -> None:
    assert AdversarialTraining("fast", eps=0.1).settings()["step_size"] == pytest.approx(0.125)
    assert AdversarialTraining("pgd", eps=0.1, steps=4).settings()["step_size"] == pytest.approx(0.0625)
    fgsm = AdversarialTraining("fgsm", eps=0.1)
    assert (fgsm.ratio, fgsm.steps, fgsm.settings()["random_start"]) == (0.5, 1, False)
    assert AdversarialTraining("pgd", eps=0.1).settings()["random_start"] is True


# ---------------------------------------------------------------------------------------------------- training


def test_the_share_of_adversarial_cases_follows_the_ratio() -> None:
    objective = AdversarialTraining("fgsm", eps=0.1, ratio=0.3, scheme=BLOBS, mask="none")
    counts = [objective.chosen(5, objective.generator(i)).numel() for i in range(400)]
    assert set(counts) <= {1, 2}
    assert sum(counts) / (5 * len(counts)) == pytest.approx(0.3, abs=0.03)
    assert AdversarialTraining("fgsm", eps=0.1, ratio=0.0).chosen(5, objective.generator(0)).numel() == 0
    assert AdversarialTraining("fgsm", eps=0.1, ratio=1.0).chosen(5, objective.generator(0)).numel() == 5


def test_ratio_zero_trains_on_the_clean_batch_and_pgd_raises_the_loss() -> None:
    net = bn_net()
    images, labels = batch()
    clean = AdversarialTraining("fgsm", eps=0.3, ratio=0.0, scheme=BLOBS, mask="none")
    loss, _ = clean(net, plain, ce, images, labels, iteration=1)
    assert float(loss.detach()) == pytest.approx(float(ce(net(images), labels)), rel=1e-6)
    net.train()
    pgd = AdversarialTraining("pgd", eps=0.3, steps=3, scheme=BLOBS, mask="none")
    adv_loss, _ = pgd(net, plain, ce, images, labels, iteration=1)
    assert float(adv_loss) > float(loss) + 0.05


def test_random_starts_are_fresh_every_iteration_and_the_same_after_a_resume() -> None:
    net = bn_net()
    images, labels = batch()
    objective = AdversarialTraining("fast", eps=0.2, scheme=BLOBS, mask="none", seed=3)
    first, _ = objective.examples(net, images, labels, iteration=5)
    again, _ = copy.deepcopy(objective).examples(net, images, labels, iteration=5)
    other, _ = objective.examples(net, images, labels, iteration=6)
    other_rank, _ = objective.examples(net, images, labels, iteration=5, rank=1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, other_rank)
    assert float((first - images).abs().max()) <= 0.2 + 1e-6


def test_the_attack_runs_on_the_unwrapped_module_in_eval_mode_and_leaves_training_state_alone() -> None:
    module = bn_net()
    wrapped = Wrapper(module).train()
    images, labels = batch()
    stats = module[1].running_mean.clone()
    objective = AdversarialTraining("pgd", eps=0.2, steps=2, scheme=BLOBS, mask="none")
    out, index = objective.examples(wrapped, images, labels, iteration=1)
    assert index.tolist() == [0, 1, 2, 3]
    assert not torch.equal(out, images)
    assert torch.equal(module[1].running_mean, stats)  # batch norm in eval mode during the attack
    assert module.training and all(p.requires_grad for p in module.parameters())
    assert all(p.grad is None for p in module.parameters())  # input gradients only


def test_trades_objective_is_the_clean_loss_plus_beta_times_kl() -> None:
    net = bn_net().eval()
    images, labels = batch()
    objective = AdversarialTraining("pgd", eps=0.2, steps=2, trades_beta=6.0, scheme=BLOBS, mask="none")
    loss, pred = objective(net, plain, ce, images, labels, iteration=2)
    adversarial, _ = objective.examples(net, images, labels, iteration=2)
    expected = ce(net(images), labels) + 6.0 * trades_kl(net(images), net(adversarial))
    assert torch.allclose(pred, net(images), atol=1e-6)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_distillation_student_equal_to_the_teacher_has_zero_soft_loss_and_the_teacher_stays_frozen() -> None:
    teacher = bn_net().train()
    student = copy.deepcopy(teacher).eval()
    images, labels = batch()
    objective = Distillation(teacher, temperature=20.0, hard_weight=0.0, scheme=BLOBS)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    loss, _ = objective(student, plain, ce, images, labels)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    hard = Distillation(teacher, temperature=20.0, hard_weight=0.5, scheme=BLOBS)
    loss, pred = hard(student, plain, ce, images, labels)
    assert float(loss) == pytest.approx(0.5 * float(ce(pred, labels)), rel=1e-5)
    with pytest.raises(ValueError, match="hard_weight"):
        Distillation(teacher, hard_weight=-1.0)


def test_a_teacher_sharing_weights_with_the_student_is_refused() -> None:
    student = bn_net()
    shared = nn.Sequential(student[0], nn.Conv2d(8, 2, 1))
    images, labels = batch()
    with pytest.raises(ValueError, match="shares weights with the student"):
        Distillation(shared, temperature=5.0)(student, plain, ce, images, labels)
