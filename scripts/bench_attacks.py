"""Benchmark the attacks on CPU: i-FGSM's per-step overhead over a bare forward + backward, and sweep throughput.

Usage::

    python scripts/bench_attacks.py [--quick] [--size 96] [--steps 4] [--repeats 7] [--threads N]
        [--output bundles/brats_unet3d/eval/bench_attacks.json]

The network is the CPU demo's (``configs/cpu_demo.json``: MONAI UNet, channels 16-32-64-128, strides 2-2-2, two
residual units, instance norm, 4 MR series in, 4 BraTS classes out) with random weights; the data are synthetic.
Prints one JSON object and writes it to ``--output``.

Method:

* **Step overhead ratio.** One step of :class:`~robustseg.attacks.IterativeFGSM` is timed inside a real attack call:
  the attack's ``loss_and_gradient``, ``initial_loss_and_gradient`` (step 0) and ``evaluate`` are wrapped, so step
  ``t`` runs from the start of gradient ``t`` to the start of gradient ``t + 1`` (the last one to the final
  evaluation) and holds everything the
  loop does: input copy, forward through the inferer, loss map, backward, gradient audit, ascent and projection. The
  reference is a bare ``torch.autograd.grad(cross_entropy(inferer(x, model), y), x)`` on the same input, in the same
  process and threads, in the attack's eval mode with frozen parameters. The wrappers run one bare forward + backward
  (timed apart, outside the steps) before every step and before the final evaluation, so the two strictly alternate
  (bare, step, bare, step, ..., bare). ``ratio`` is the median over all steps of step time / mean of its two flanking
  bare times, which cancels slow drifts of the load on a shared machine; ``ratio_of_medians`` is given beside it.
  One warm-up call precedes ``--repeats`` timed calls. What the call adds once (final evaluation forward, PSNR,
  norms) is reported apart as ``per_call_fixed_s`` and folded into ``amortized_ratio`` = call time / steps / bare
  time, which depends on ``--steps``.
* **Overhead breakdown.** Each piece a step adds to the bare forward + backward (loss map and its backward beyond
  plain cross-entropy, input copy, ``_check_gradient``, ascent, projection, ``mask_for``) and each per-call piece is
  timed alone on the same tensors (median of many repeats) and given as a fraction of the bare forward + backward.
  When a ratio exceeds ``--limit``, a ``torch.profiler`` run lists the operators whose self time grows most per step.
* **Sweep throughput.** :class:`~robustseg.workflows.attack_sweep.AttackSweep` end to end (checkpoint check,
  self-checks, clean and attacked inference, results, statistics, example volumes) on synthetic cases, through the
  sliding window of ``--sw-roi``: cases x attacked conditions per minute. Batching: time of ``B`` single-case calls
  of i-FGSM / time of one call on a batch of ``B`` (> 1: batching would help; the sweep attacks one case at a time).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import monai
import torch
import torch.nn.functional as F
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from torch import nn

from robustseg.attacks import IterativeFGSM, ThreatModel
from robustseg.attacks.base import Attack
from robustseg.attacks.threat import per_sample_norm, psnr_db
from robustseg.data.phantom import blob_case
from robustseg.workflows.attack_sweep import AttackSweep

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "bundles" / "brats_unet3d" / "eval" / "bench_attacks.json"
QUICK = {
    "size": 16,
    "sw_shape": [24, 16, 16],
    "sw_roi": 16,
    "steps": 2,
    "repeats": 2,
    "breakdown_repeats": 3,
    "sweep_cases": 2,
    "sweep_size": 16,
    "sweep_steps": 2,
    "batch_repeats": 1,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for smoke tests (numbers mean little)")
    parser.add_argument("--size", type=int, default=96, help="direct input: one size^3 window, batch 1")
    parser.add_argument("--sw-shape", type=int, nargs=3, default=[80, 96, 80], help="volume for the sliding window")
    parser.add_argument("--sw-roi", type=int, default=64, help="sliding-window roi_size, also the sweep's (the demo's)")
    parser.add_argument("--steps", type=int, default=4, help="i-FGSM steps per timed call (>= 2)")
    parser.add_argument("--repeats", type=int, default=7, help="timed attack calls after one warm-up")
    parser.add_argument("--breakdown-repeats", type=int, default=20, help="repeats of each timed piece")
    parser.add_argument("--losses", nargs="+", default=["ce", "segpgd"], help="attack losses to time")
    parser.add_argument("--limit", type=float, default=1.10, help="step overhead ratio the issue allows")
    parser.add_argument("--sweep-cases", type=int, default=3, help="synthetic cases in the sweep")
    parser.add_argument("--sweep-size", type=int, default=64, help="sweep cases are size^3")
    parser.add_argument("--sweep-steps", type=int, default=3, help="i-FGSM steps in the sweep")
    parser.add_argument("--sweep-eps", type=float, nargs="+", default=[0.05, 0.1], help="sweep budgets")
    parser.add_argument("--batch", type=int, default=2, help="batch size B for the batching estimate")
    parser.add_argument("--batch-repeats", type=int, default=3, help="rounds of (B singles, one batch)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic data")
    return parser


# ---------------------------------------------------------------------- model, data, timing helpers


def demo_network(seed: int) -> nn.Module:
    """The CPU demo's UNet with random weights drawn without touching the global RNG."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return UNet(
            spatial_dims=3,
            in_channels=4,
            out_channels=4,
            channels=(16, 32, 64, 128),
            strides=(2, 2, 2),
            num_res_units=2,
            norm="instance",
        ).eval()


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "repeats": [float(v) for v in values], "n": len(values)}


def synchronize() -> None:
    """Wait for queued GPU work, so a wall-clock interval holds what was launched in it (no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any]) -> float:
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def time_median(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(time_call(fn) for _ in range(repeats))


def bare_forward_backward(model: nn.Module, inferer: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``torch.autograd.grad(cross_entropy(model(x), y), x)``, through ``inferer`` when one is given."""
    xx = x.detach().requires_grad_(True)
    logits = inferer(xx, model) if inferer is not None else model(xx)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xx)
    return grad


def timed_attack(
    attack: Attack, x: torch.Tensor, labels: torch.Tensor, bare: Callable[[], Any]
) -> tuple[float, list[float], list[float]]:
    """Run ``attack(x, labels)`` with a bare forward + backward timed before each step and before the final evaluation.

    The attack's gradient methods and ``evaluate`` are wrapped on the instance: on entry the wrapper closes the
    previous step's interval, runs ``bare`` (timed apart), then opens the next interval. Bare runs and steps thus
    alternate strictly (bare, step, bare, step, ..., bare) and no bare run falls inside a step.

    Returns:
        The call's wall time without the bare runs, the ``steps`` step times and the ``steps + 1`` bare times.
    """
    steps: list[float] = []
    bares: list[float] = []
    opened: list[float] = []
    inner_gradient, inner_initial, inner_evaluate = (
        attack.loss_and_gradient,
        attack.initial_loss_and_gradient,
        attack.evaluate,
    )

    def interleave() -> None:
        if opened:
            synchronize()
            steps.append(time.perf_counter() - opened.pop())
        bares.append(time_call(bare))
        opened.append(time.perf_counter())

    def gradient(*args: Any, **kwargs: Any) -> Any:
        interleave()
        return inner_gradient(*args, **kwargs)

    def initial(*args: Any, **kwargs: Any) -> Any:
        interleave()
        return inner_initial(*args, **kwargs)

    def evaluate(*args: Any, **kwargs: Any) -> Any:
        interleave()
        opened.clear()
        return inner_evaluate(*args, **kwargs)

    attack.loss_and_gradient, attack.initial_loss_and_gradient, attack.evaluate = gradient, initial, evaluate
    try:
        total = time_call(lambda: attack(x, labels))
    finally:
        del attack.loss_and_gradient, attack.initial_loss_and_gradient, attack.evaluate
    return total - sum(bares), steps, bares


# ---------------------------------------------------------------------- step overhead


def paired_steps(
    attack: Attack, x: torch.Tensor, labels: torch.Tensor, bare: Callable[[], Any], repeats: int
) -> dict[str, list[float]]:
    """``repeats`` timed attack calls after a warm-up (:func:`timed_attack`): every bare and step time, each call's
    time and fixed part (outside the steps), and each step over the mean of the two bare runs that flank it."""
    timed_attack(attack, x, labels, bare)  # warm-up
    out: dict[str, list[float]] = {"bares": [], "steps": [], "calls": [], "fixed": [], "paired": []}
    for _ in range(repeats):
        total, step_times, bare_times = timed_attack(attack, x, labels, bare)
        out["bares"].extend(bare_times)
        out["steps"].extend(step_times)
        out["calls"].append(total)
        out["fixed"].append(total - sum(step_times))
        flanks = itertools.pairwise(bare_times)
        out["paired"].extend(t / ((a + b) / 2) for t, (a, b) in zip(step_times, flanks, strict=True))
    return out


def step_overhead(
    name: str, model: nn.Module, inferer: Any, shape: Sequence[int], loss: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step overhead ratio of one configuration, and its breakdown."""
    gen = torch.Generator().manual_seed(args.seed)
    image, label = blob_case(shape, gen)
    x, labels = image[None], label[None]
    y = labels[:, 0]
    attack = IterativeFGSM(model, ThreatModel("linf", 0.05), steps=args.steps, inferer=inferer, loss=loss)

    def bare() -> None:
        bare_forward_backward(model, inferer, x, y)  # called inside the attack: eval mode, frozen parameters

    timing = paired_steps(attack, x, labels, bare, args.repeats)
    bares, steps, calls, fixed, paired = (timing[k] for k in ("bares", "steps", "calls", "fixed", "paired"))
    bare_s, step_s = statistics.median(bares), statistics.median(steps)
    ratio = statistics.median(paired)
    result = {
        "name": name,
        "inferer": "none" if inferer is None else f"SlidingWindowInferer(roi_size={args.sw_roi}, sw_batch_size=4)",
        "input_shape": list(x.shape),
        "loss": loss,
        "steps": args.steps,
        "bare_forward_backward_s": summary(bares),
        "attack_step_s": summary(steps),
        "attack_call_s": summary(calls),
        "per_call_fixed_s": summary(fixed),
        "ratio": ratio,
        "ratio_paired": summary(paired),
        "ratio_of_medians": step_s / bare_s,
        "amortized_ratio": statistics.median(calls) / args.steps / bare_s,
        "within_limit": ratio <= args.limit,
    }
    breakdown = overhead_breakdown(
        attack, model, inferer, x, labels, bare_s, args.breakdown_repeats, profile=ratio > args.limit
    )
    return result, breakdown


def overhead_breakdown(
    attack: IterativeFGSM,
    model: nn.Module,
    inferer: Any,
    x: torch.Tensor,
    labels: torch.Tensor,
    bare_s: float,
    n: int,
    profile: bool,
) -> dict[str, Any]:
    """Each piece a step (and a call) adds to the bare forward + backward, timed alone, in s and as a fraction."""
    y = labels[:, 0]
    with attack.attack_mode(), torch.enable_grad():
        logits = attack.forward(x).detach().requires_grad_(True)
        grad = bare_forward_backward(model, inferer, x, y)
        direction = attack.ascent(grad, x, False)
        delta = attack.threat.project(attack.step_size * direction, x)
        total = attack.steps

        def plain_ce() -> Any:
            return torch.autograd.grad(F.cross_entropy(logits, y), logits)

        def attack_loss() -> Any:
            return torch.autograd.grad(attack.objective(logits, labels, None, 1, total).sum(), logits)

        step = {
            "loss_map_fwd_bwd_beyond_ce": time_median(attack_loss, n) - time_median(plain_ce, n),
            "input_copy": time_median(lambda: (x + delta).detach().requires_grad_(True), n),
            "check_gradient": time_median(lambda: attack._check_gradient(grad, x, 1), n),
            "ascent": time_median(lambda: attack.ascent(grad, x, False), n),
            "project": time_median(lambda: attack.threat.project(delta + attack.step_size * direction, x), n),
        }
        mask = attack.threat.mask_for(x)
        call = {
            "final_evaluate_forward": time_median(
                lambda: attack.evaluate(x, delta, labels, None, total), max(1, n // 5)
            ),
            "check_logits": time_median(lambda: attack._check_logits(logits.detach()), n),
            "psnr": time_median(lambda: psnr_db(x, delta, mask), n),
            "norms": time_median(lambda: (per_sample_norm(delta, "linf"), per_sample_norm(delta, "l2")), n),
        }
        mask_for_s = time_median(lambda: attack.threat.mask_for(x), n)
        out: dict[str, Any] = {
            "per_step": {k: {"s": v, "fraction_of_bare": v / bare_s} for k, v in step.items()},
            "mask_for_s": {"s": mask_for_s, "calls_per_step": 3, "note": "inside check_gradient, ascent, project"},
            "per_call": {k: {"s": v, "fraction_of_bare": v / bare_s} for k, v in call.items()},
            "predicted_step_ratio": 1 + sum(step.values()) / bare_s,
        }
        if profile:
            out["profile_extra_ops_per_step_s"] = profile_extra_ops(attack, model, inferer, x, labels)
    return out


def profile_extra_ops(
    attack: IterativeFGSM, model: nn.Module, inferer: Any, x: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Operators whose self CPU time per step grows most from the bare forward + backward to an attack step."""
    from torch.profiler import ProfilerActivity, profile

    def self_times(fn: Callable[[], Any]) -> dict[str, float]:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        return {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}

    def bare() -> None:
        with attack.attack_mode(), torch.enable_grad():
            bare_forward_backward(model, inferer, x, labels[:, 0])

    base, att = self_times(bare), self_times(lambda: attack(x, labels))
    extra = {k: att.get(k, 0.0) / attack.steps - base.get(k, 0.0) for k in set(base) | set(att)}
    return dict(sorted(extra.items(), key=lambda kv: -kv[1])[:10])


# ---------------------------------------------------------------------- sweep throughput and batching


def sweep_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(args.seed + 1)
    shape = [args.sweep_size] * 3
    cases: list[dict[str, Any]] = []
    for i in range(args.sweep_cases):
        image, label = blob_case(shape, gen)
        cases.append({"image": image, "label": label, "case_id": f"synthetic_{i:03d}"})
    network = demo_network(args.seed)
    checkpoint = workdir / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    inferer = SlidingWindowInferer(roi_size=args.sw_roi, sw_batch_size=4, overlap=0.25)
    attacks = ["fgsm", {"name": "ifgsm", "steps": args.sweep_steps}]
    conditions = len(attacks) * len(args.sweep_eps)
    sweep = AttackSweep(network, checkpoint, inferer, cases, attacks, args.sweep_eps, workdir / "sweep")
    seconds = time_call(sweep.run)
    throughput = args.sweep_cases * conditions / (seconds / 60)

    single = IterativeFGSM(network, ThreatModel("linf", args.sweep_eps[0]), steps=args.sweep_steps, inferer=inferer)
    chosen = [cases[i % len(cases)] for i in range(args.batch)]
    images, labels = torch.stack([c["image"] for c in chosen]), torch.stack([c["label"] for c in chosen])

    def singles() -> float:
        return time_call(lambda: [single(images[i : i + 1], labels[i : i + 1]) for i in range(args.batch)])

    def batched() -> float:
        return time_call(lambda: single(images, labels))

    singles(), batched()  # warm-up
    singles_s, batch_s = [], []
    for _ in range(args.batch_repeats):
        singles_s.append(singles())
        batch_s.append(batched())
    return {
        "sweep": {
            "cases": args.sweep_cases,
            "case_shape": [4, *shape],
            "attacks": attacks,
            "eps": args.sweep_eps,
            "conditions_per_case": conditions,
            "inferer": f"SlidingWindowInferer(roi_size={args.sw_roi}, sw_batch_size=4, overlap=0.25)",
            "wall_s": summary([seconds]),
            "cases_x_conditions_per_minute": summary([throughput]),
        },
        "batching": {
            "batch": args.batch,
            "attack": f"ifgsm steps={args.sweep_steps}",
            "singles_s": summary(singles_s),
            "batch_s": summary(batch_s),
            "throughput_ratio": statistics.median(singles_s) / statistics.median(batch_s),
        },
    }


# ---------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    model = demo_network(args.seed)
    sw = SlidingWindowInferer(roi_size=args.sw_roi, sw_batch_size=4, overlap=0.25)
    configs = [("direct", None, [args.size] * 3), ("sliding_window", sw, list(args.sw_shape))]
    results: list[dict[str, Any]] = []
    breakdowns: dict[str, Any] = {}
    for kind, inferer, shape in configs:
        for loss in args.losses:
            name = f"{kind}_{loss}"
            result, breakdowns[name] = step_overhead(name, model, inferer, shape, loss, args)
            results.append(result)
    with tempfile.TemporaryDirectory(prefix="bench_attacks_") as tmp:
        throughput = sweep_throughput(args, Path(tmp))
    worst = max(r["ratio"] for r in results)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {
        "benchmark": "attacks",
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "network": "UNet(3, 4, 4, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2, norm=instance)",
        "config": config,
        "step_overhead": {
            "limit": args.limit,
            "max_ratio": worst,
            "within_limit": worst <= args.limit,
            "cases": results,
        },
        "overhead_breakdown": breakdowns,
        **throughput,
        "elapsed_s": time.perf_counter() - started,
    }


def execute(
    args: argparse.Namespace, quick: dict[str, Any], measure: Callable[[argparse.Namespace], dict[str, Any]]
) -> int:
    """Apply ``--quick``, check ``--steps``, run ``measure`` under ``--threads``, write the JSON and print it."""
    if args.quick:
        for key, value in quick.items():
            setattr(args, key, value)
    if args.steps < 2:
        raise SystemExit(f"--steps must be >= 2 but is {args.steps}.")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        report = measure(args)
    finally:
        torch.set_num_threads(threads)
    text = json.dumps(report, indent=2, allow_nan=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv), QUICK, run)


if __name__ == "__main__":
    sys.exit(main())
