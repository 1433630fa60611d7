"""Cost of one defended training iteration over one clean iteration, on the bundle's CPU demo network (JSON).

Targets (issue "Defences"): PGD-k adversarial training at most ``1.1 * (k + 1)`` clean iterations, fast FGSM
training at most 2.2; distillation's cost (teacher inference included) is reported. Every configuration is timed
interleaved with the clean iteration in one process (``repeats`` rounds, medians), on a batch of random patches of
the demo's ``roi_size`` with the bundle's loss and optimizer. ``--device cuda`` times it on a GPU with AMP.

    python scripts/bench_defenses.py --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from robustseg.defenses import AdversarialTraining, Distillation

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "brats_unet3d" / "configs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (medians reported)")
    parser.add_argument("--batch", type=int, default=2, help="patches per iteration (the demo: num_samples 2)")
    parser.add_argument("--roi", type=int, default=None, help="patch side (default: the CPU demo's roi_size)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 3, 5], help="k of the PGD-k rows")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda: AMP, as the bundle trains)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    amp = device.type == "cuda"
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json"), str(REPO / "configs" / "cpu_demo.json")])
    roi = [args.roi] * 3 if args.roi else list(parser.get_parsed_content("roi_size"))
    torch.manual_seed(args.seed)
    network = parser.get_parsed_content("network_def").to(device)
    teacher = copy.deepcopy(network)
    loss_function = parser.get_parsed_content("loss")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randn((args.batch, 4, *roi), generator=g).to(device)
    labels = torch.randint(0, 4, (args.batch, 1, *roi), generator=g).to(device)

    def inferer(x: torch.Tensor, net: torch.nn.Module) -> torch.Tensor:
        return net(x)

    def clean(net: torch.nn.Module, inf: Any, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, **_: Any) -> Any:
        pred = inf(x, net)  # the plain objective, with the defences' signature
        return loss_fn(pred, y), pred

    def iteration(objective: Callable[..., Any]) -> Callable[[int], float]:
        def step(i: int) -> float:
            _sync(device)
            start = time.perf_counter()
            network.train()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=amp):
                loss, _ = objective(network, inferer, loss_function, images, labels, iteration=i)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            _sync(device)
            return time.perf_counter() - start

        return step

    threat = {"mask": "nonzero", "head": "softmax"}
    configs: dict[str, Callable[[int], float]] = {
        f"pgd{k}": iteration(AdversarialTraining("pgd", eps=0.25, steps=k, **threat)) for k in args.steps
    }
    configs["fast"] = iteration(AdversarialTraining("fast", eps=0.25, **threat))
    configs["fgsm_ratio0.5"] = iteration(AdversarialTraining("fgsm", eps=0.25, **threat))
    configs["distillation"] = iteration(Distillation(teacher, temperature=20.0))
    clean_step = iteration(clean)
    for step in (clean_step, *configs.values()):  # warm-up
        step(0)
    times: dict[str, list[float]] = {"clean": [], **{name: [] for name in configs}}
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(args.repeats):
        for name, step in configs.items():
            before = clean_step(r + 1)
            t = step(r + 1)
            after = clean_step(r + 1)
            times["clean"] += [before, after]
            times[name].append(t)
            ratios[name].append(t / ((before + after) / 2))
    medians = {name: statistics.median(v) for name, v in ratios.items()}
    targets = {f"pgd{k}": 1.1 * (k + 1) for k in args.steps}
    targets["fast"] = 2.2
    return {
        "benchmark": "defended training iteration over a clean iteration",
        "network": "brats_unet3d cpu_demo UNet",
        "batch": [args.batch, 4, *roi],
        "device": str(device),
        "amp": amp,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "repeats": args.repeats,
        "clean_iteration_s": statistics.median(times["clean"]),
        "iteration_s": {name: statistics.median(v) for name, v in times.items() if name != "clean"},
        "ratio_over_clean": medians,
        "targets": targets,
        "meets_targets": {name: medians[name] <= bound for name, bound in targets.items()},
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(build_parser().parse_args(argv)), indent=2))


if __name__ == "__main__":
    main()
