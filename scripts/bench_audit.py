"""Benchmark the audit sweep on CPU: its overhead over the bare passes its attacks need, and a plain loop beside it.

Usage::

    python scripts/bench_audit.py [--quick] [--cases 7] [--shape 80 96 80] [--rounds 3] [--threads N]
        [--output bundles/brats_unet3d/eval/bench_audit.json]

The network is the CPU demo's, built from the bundle's own configs (``train.json`` + ``configs/cpu_demo.json``) with
seeded random weights; the cases are synthetic z-scored volumes (a brain-shaped non-zero region with a nested tumour);
the sweep is the demo's (``configs/cpu_demo.json``: FGSM, i-FGSM and ti-FGSM with 3 steps at eps 0.25, each
budget's noise baseline, examples of 2 cases) through the 64³ sliding window. Prints one JSON object and writes it to
``--output``.

Method, all in one process:

* **Overhead ratio.** ``AttackSweep.run()`` over the cases (fingerprint, self-checks, every condition, rows, worst
  case, statistics, example NIfTI; not the HTML report) divided by what its attacks need when done plainly, from
  the bare passes timed through the same inferer in the same process: per case one clean forward; FGSM one forward
  + backward and one forward to score it; i-FGSM and ti-FGSM ``steps`` forward + backward and one scoring forward
  each; one forward per noise baseline. The sweep shares work a plain loop repeats (the clean forward and the clean
  gradient that FGSM and the first i-FGSM step start from), so the ratio can fall below 1; the passes the sweep
  actually ran are counted by a hook on the network and given beside it. Rounds alternate sweep and bare timings.
* **Plain loop, case by case.** The same conditions written as a plain loop around the same inferer (what a user
  would write by hand: sign steps, clamp to eps, mask, one forward to score), interleaved case by case with the
  sweep's own per-case step, in one process. Both produce identical adversarial inputs and Dice (checked); the
  ratio is robustseg's time per case over the loop's.
"""

from __future__ import annotations

import argparse
import json
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
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from torch import nn

from robustseg.data.phantom import blob_case
from robustseg.evaluation.dice import region_dice
from robustseg.labels import BRATS
from robustseg.workflows.attack_sweep import AttackSweep

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "brats_unet3d" / "configs"
DEFAULT_OUTPUT = REPO_ROOT / "bundles" / "brats_unet3d" / "eval" / "bench_audit.json"
DEMO_CHECKPOINT = REPO_ROOT / "bundles" / "brats_unet3d" / "models" / "cpu_demo" / "model.pt"
DEMO_DATALIST = REPO_ROOT / "data" / "phantoms" / "datalist.json"
QUICK = {"cases": 2, "shape": [24, 24, 24], "sw_roi": 16, "rounds": 1, "steps": 2, "synthetic": True}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for smoke tests (numbers mean little)")
    parser.add_argument("--cases", type=int, default=7, help="synthetic cases")
    parser.add_argument("--shape", type=int, nargs=3, default=[80, 96, 80], help="case shape (the demo's volumes)")
    parser.add_argument("--sw-roi", type=int, default=64, help="sliding-window roi_size (the demo's)")
    parser.add_argument("--steps", type=int, default=3, help="i-FGSM and ti-FGSM steps (the demo's)")
    parser.add_argument("--eps", type=float, default=0.25, help="the budget (the demo's)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of sweep and bare timings")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic data")
    parser.add_argument(
        "--checkpoint", type=Path, default=DEMO_CHECKPOINT, help="trained weights (default: the demo's, when present)"
    )
    parser.add_argument(
        "--datalist", type=Path, default=DEMO_DATALIST, help="real test cases (default: the demo's, when present)"
    )
    parser.add_argument("--synthetic", action="store_true", help="random weights and synthetic cases")
    return parser


def demo_parser() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json"), str(REPO_ROOT / "configs" / "cpu_demo.json")])
    return parser


def demo_network(seed: int) -> nn.Module:
    """The CPU demo's network from the bundle's configs, with seeded random weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return demo_parser().get_parsed_content("network_def").eval()


def demo_cases(datalist: Path, count: int) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """The first ``count`` test cases of a datalist through the bundle's validation preprocessing."""
    from robustseg.data.datalist import load_datalist

    parser = demo_parser()
    transform = parser.get_parsed_content("validate#preprocessing")
    entries = load_datalist(datalist, "testing", datalist.parent)[:count]
    return [(item["image"], item["label"], entry["case_id"]) for entry in entries for item in [transform(entry)]]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "repeats": [float(v) for v in values], "n": len(values)}


class CountingInferer(SlidingWindowInferer):
    """MONAI's sliding window that counts whole-case passes, and those whose input needs a gradient."""

    forwards = 0
    with_grad = 0

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        type(self).forwards += 1
        type(self).with_grad += int(torch.is_grad_enabled() and inputs.requires_grad)
        return super().__call__(inputs, network, *args, **kwargs)


# ---------------------------------------------------------------------- the plain loop


def plain_case(
    model: nn.Module, inferer: Any, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, noise: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The sweep's conditions written plainly: adversarial input and Dice (N, R) of each."""
    mask = (x != 0).any(1, keepdim=True).float()
    background = torch.zeros_like(y[:, 0])

    def forward(v: torch.Tensor) -> torch.Tensor:
        return inferer(v, model)

    def score(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            classes = forward(v).max(1, keepdim=True).indices
        return region_dice(BRATS.to_regions(classes), BRATS.to_regions(y))

    def grad(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        v = v.detach().requires_grad_(True)
        loss = F.cross_entropy(forward(v), target, reduction="none").flatten(1).mean(1).sum()
        return torch.autograd.grad(loss, v)[0]

    def iterate(target: torch.Tensor, sign: float) -> torch.Tensor:
        delta = torch.zeros_like(x)
        step = 2.5 * eps / steps
        for _ in range(steps):
            delta = (delta + sign * step * grad(x + delta, target).sign() * mask).clamp(-eps, eps) * mask
        return x + delta

    out = {"clean": (x, score(x))}
    fgsm = x + eps * grad(x, y[:, 0]).sign() * mask
    for name, adv in (("fgsm", fgsm), ("ifgsm", iterate(y[:, 0], 1.0)), ("tifgsm", iterate(background, -1.0))):
        out[name] = (adv, score(adv))
    out["noise"] = (x + noise, score(x + noise))
    return out


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key.replace("-", "_"), value)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = demo_network(args.seed)
    trained = not args.synthetic and args.checkpoint.is_file() and args.datalist.is_file()
    if trained:
        from robustseg.checkpoints import load_checkpoint

        load_checkpoint(args.checkpoint, model)
        loaded = demo_cases(args.datalist, args.cases)
        cases = [
            (image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor).long()) for image, label, _ in loaded
        ]
    else:
        generator = torch.Generator().manual_seed(args.seed)
        cases = [blob_case(args.shape, generator) for _ in range(args.cases)]
    inferer = CountingInferer(roi_size=[args.sw_roi] * 3, sw_batch_size=4, overlap=0.25)
    dataset = [{"image": image, "label": label, "case_id": f"case{i:02d}"} for i, (image, label) in enumerate(cases)]
    attacks = ["fgsm", {"name": "ifgsm", "steps": args.steps}, {"name": "tifgsm", "steps": args.steps}]
    work = Path(tempfile.mkdtemp(prefix="bench_audit_"))
    checkpoint = work / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    counter = CountingInferer

    def make_sweep(out: Path, data: list[dict[str, Any]], examples: int) -> AttackSweep:
        return AttackSweep(
            model, checkpoint, inferer, data, attacks, [args.eps], out, num_examples=examples, seed=args.seed
        )

    x0, y0 = cases[0][0][None], cases[0][1][None]

    def bare_forward() -> None:
        with torch.no_grad():
            inferer(x0, model)

    def bare_forward_backward() -> None:
        v = x0.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(inferer(v, model), y0[:, 0]), v)

    bare_forward(), bare_forward_backward()  # warm-up
    sweep_s, forward_s, fb_s, passes = [], [], [], []
    for round_ in range(args.rounds):
        forward_s += [timed(bare_forward) for _ in range(3)]
        fb_s += [timed(bare_forward_backward) for _ in range(3)]
        before = (counter.forwards, counter.with_grad)
        sweep_s.append(timed(lambda r=round_: make_sweep(work / f"sweep{r}", dataset, 2).run()))
        passes.append((counter.forwards - before[0], counter.with_grad - before[1]))
    t_f, t_fb = statistics.median(forward_s), statistics.median(fb_s)
    plain_f = 1 + 1 + 1 + 1 + 1  # clean, the scoring forward of three attacks, noise
    plain_fb = 1 + 2 * args.steps
    needed = args.cases * (plain_f * t_f + plain_fb * t_fb)
    run_f, run_g = passes[0]

    # the plain loop, interleaved case by case with the sweep's own per-case step
    sweep = make_sweep(work / "per_case", dataset, 0)
    sweep.load()
    from robustseg.workflows import distributed
    from robustseg.workflows.sweep import COLUMNS, KEY

    robustseg_s, plain_s, identical = [], [], True
    for index in range(args.cases):
        store = distributed.open_store(work / f"per_case_{index}", COLUMNS, KEY)
        robustseg_s.append(timed(lambda i=index, s=store: sweep._case(i, f"case{i:02d}", s, set())))
        x, y = cases[index][0][None], cases[index][1][None]
        case = sweep._load_case(index, f"case{index:02d}")[0]
        noise_condition = next(c for c in sweep.conditions if c.kind == "noise")
        noise = noise_condition.apply(case).image.as_subclass(torch.Tensor) - x
        result: dict[str, Any] = {}
        start = time.perf_counter()
        result.update(plain_case(model, inferer, x, y, args.eps, args.steps, noise))
        plain_s.append(time.perf_counter() - start)
        stored = {(r["condition"].split("@")[0], r["region"]): float(r["dice"]) for r in store.rows()}
        for name, (_, dice) in result.items():
            for r, region in enumerate(BRATS.region_names):
                identical &= abs(stored[(name, region)] - float(dice[0, r])) < 1e-6
    report = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "model": f"the trained demo model {args.checkpoint} on test cases of {args.datalist}"
        if trained
        else "the demo network with random weights on synthetic cases",
        "case_shapes": [list(image.shape) for image, _ in cases],
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "bare_forward_s": summary(forward_s),
        "bare_forward_backward_s": summary(fb_s),
        "sweep_s": summary(sweep_s),
        "passes_a_plain_audit_needs_per_case": {"forward": plain_f, "forward_backward": plain_fb},
        "passes_the_sweep_ran_per_case": {
            "forward_only": (run_f - run_g) / args.cases,
            "forward_backward": run_g / args.cases,
        },
        "needed_s": needed,
        "overhead_ratio": statistics.median(sweep_s) / needed,
        "per_case": {
            "robustseg_s": summary(robustseg_s),
            "plain_loop_s": summary(plain_s),
            "ratio": statistics.median(robustseg_s) / statistics.median(plain_s),
            "paired_ratios": [a / b for a, b in zip(robustseg_s, plain_s, strict=True)],
            "identical_dice": bool(identical),
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
