"""Which basis perturbation, at which level, each training sample gets (seed 000's sampler, in the paper's order).

Every op has an equal share. Within an op, its levels are ranked by the score the model keeps under them, the most
damaging first, and weighted by the beta-binomial ``pmf(i; n, a, b)`` for ranks ``i = 0 .. n-1`` (``n`` levels,
``a = 0.75``, ``b = 1.0``): harder levels get more weight, as the paper states. The public code sorted the other way
and gave the least damaging level the most weight. The beta-binomial's last mass ``pmf(n)`` of every op goes to
clean samples (about 16 % with four levels), or ``clean_share`` sets that share outright. A drawn level is jittered
by ``N(0, jitter)`` and clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import betabinom

__all__ = ["Draw", "SensitivitySampler"]


@dataclass(frozen=True)
class Draw:
    """One sample's augmentation: ``op`` at ``level``, or no perturbation when ``op`` is None."""

    op: str | None
    level: float


class SensitivitySampler:
    """Draws (op, level) with more weight on the levels that cost the model more.

    Args:
        table: per op, ``(level, score)`` pairs: the score (Dice or mIoU) the model kept at that level.
        a, b: the beta-binomial's shape over ranks.
        clean_share: the share of samples left clean; None gives each op's ``pmf(n)`` tail to clean samples.
        jitter: standard deviation of the Gaussian jitter of a drawn level.
        seed: seeds the sampler's own generator (fresh draws every call, the same sequence for the same seed).
    """

    def __init__(
        self,
        table: Mapping[str, Sequence[tuple[float, float]]],
        *,
        a: float = 0.75,
        b: float = 1.0,
        clean_share: float | None = None,
        jitter: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not table or any(len(levels) == 0 for levels in table.values()):
            raise ValueError("the sampler needs at least one op, each with at least one (level, score)")
        if clean_share is not None and not 0.0 <= clean_share < 1.0:
            raise ValueError(f"clean_share must be in [0, 1), got {clean_share}")
        if jitter < 0:
            raise ValueError(f"jitter must be >= 0, got {jitter}")
        self.jitter = jitter
        self.generator = torch.Generator().manual_seed(seed)
        choices: list[Draw] = []
        weights: list[float] = []
        tails = 0.0
        share = 1.0 / len(table)
        for op in sorted(table):
            ranked = sorted(table[op], key=lambda pair: (pair[1], -pair[0]))  # lowest score kept = most damaging
            pmf = betabinom.pmf(np.arange(len(ranked) + 1), len(ranked), a, b)
            for (level, _score), p in zip(ranked, pmf[:-1], strict=True):
                choices.append(Draw(op, float(level)))
                weights.append(share * float(p))
            tails += share * float(pmf[-1])
        perturbed = np.array(weights)
        if clean_share is None:
            clean = tails
        else:
            perturbed *= (1.0 - clean_share) / perturbed.sum()
            clean = clean_share
        self.choices = (Draw(None, 0.0), *choices)
        self.probabilities = np.concatenate([[clean], perturbed])
        self.probabilities /= self.probabilities.sum()

    def table(self) -> list[dict]:
        """Every choice with its probability, for logging: ``{"op", "level", "p"}`` (op None = clean)."""
        return [
            {"op": c.op, "level": c.level, "p": float(p)} for c, p in zip(self.choices, self.probabilities, strict=True)
        ]

    def draw(self, n: int = 1) -> list[Draw]:
        """``n`` draws, levels jittered and clipped to [0, 1]; two calls of 50 give the same draws as one of 100."""
        return [self.draw_with(self.generator) for _ in range(n)]

    def draw_with(self, generator: torch.Generator) -> Draw:
        """One draw from ``generator``: a choice by its probability, its level jittered and clipped to [0, 1]."""
        cumulative = torch.as_tensor(np.cumsum(self.probabilities))
        u = torch.rand(1, generator=generator, dtype=torch.float64)
        eps = float(torch.randn(1, generator=generator, dtype=torch.float64)) * self.jitter
        choice = self.choices[min(int(torch.searchsorted(cumulative, u, right=True)), len(self.choices) - 1)]
        level = 0.0 if choice.op is None else min(1.0, max(0.0, choice.level + eps))
        return Draw(choice.op, level)
