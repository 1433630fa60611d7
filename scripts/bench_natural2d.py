"""Benchmark the 2-D bundle (CPU, or a GPU with --device cuda): training throughput and the attack step overhead.

Usage::

    python scripts/bench_natural2d.py [--quick] [--size 128] [--batch 16] [--iterations 6] [--steps 4] [--repeats 5]
        [--threads N] [--device cpu] [--output bundles/natural2d_segmentation/eval/bench_natural2d.json]

The network, loss and optimizer are the bundle's, parsed from ``configs/train.json`` with the CPU demo profile
(``configs/cpu_demo.json``: UNet 16-32-64-128-256 behind the in-model normalisation, 7 scene classes) and random
weights; the data are offline scenes drawn in memory. Prints one JSON object and writes it to ``--output``.

Method:

* **Training throughput** (images per second). ``compute``: the trainer's step alone (forward, cross-entropy with
  ignore index 255, backward, AdamW step) on a batch of ``--batch`` scenes, median over ``--iterations`` timed steps
  after one warm-up. ``bundle_trainer``: the bundle's own ``SupervisedTrainer`` (its data loader, random transforms,
  handlers) over one epoch of scenes written to a temporary folder in VOC's layout: images per second between the
  first and the last iteration's end (start-up, such as opening the MLflow run, left out); ``epoch_s`` is the whole.
* **Attack step overhead ratio.** As ``scripts/bench_attacks.py`` measures it for 3-D (its ``timed_attack``): one
  i-FGSM step at 8/255 (L-inf, clip [0, 1], no mask) on one scene against a bare forward + backward of the same
  network, strictly alternating, median of per-step ratios to the mean of the two flanking bare runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser

from robustseg.attacks import IterativeFGSM, ThreatModel
from robustseg.data.cli import make_datalist
from robustseg.data.scenes import SceneConfig, SceneGenerator, write_scenes

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "natural2d_segmentation"
DEFAULT_OUTPUT = BUNDLE / "eval" / "bench_natural2d.json"
QUICK = {"size": 32, "batch": 2, "iterations": 2, "steps": 2, "repeats": 2, "epoch_scenes": 5}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attacks import bare_forward_backward, execute, paired_steps, summary, time_call  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for smoke tests (numbers mean little)")
    parser.add_argument("--size", type=int, default=128, help="scene height and width (the demo's)")
    parser.add_argument("--batch", type=int, default=16, help="training batch (the demo's)")
    parser.add_argument("--iterations", type=int, default=6, help="timed training steps after one warm-up")
    parser.add_argument("--epoch-scenes", type=int, default=160, help="scenes of the bundle-trainer epoch")
    parser.add_argument("--steps", type=int, default=4, help="i-FGSM steps per timed call (>= 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed attack calls after one warm-up")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (timings synchronise the GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the scenes")
    return parser


def _parser(args: argparse.Namespace, overrides: dict[str, Any]) -> ConfigParser:
    config = ConfigParser()
    config.read_config([str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "cpu_demo.json")])
    settings = {"bundle_root": str(BUNDLE), "device": f"$torch.device('{args.device}')", "amp": False}
    settings.update(batch_size=args.batch, crop_size=[args.size, args.size])
    config.update({**settings, **overrides})
    return config


def _scenes(args: argparse.Namespace, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = SceneGenerator(SceneConfig(size=args.size), seed=args.seed)
    pairs = [generator.scene(k) for k in range(n)]
    x = torch.tensor(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 255.0
    y = torch.tensor(np.stack([p[1] for p in pairs])).long()
    return x, y


def compute_throughput(args: argparse.Namespace) -> dict[str, Any]:
    config = _parser(args, {})
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        network = config.get_parsed_content("network")
    loss_fn = config.get_parsed_content("loss")
    optimizer = config.get_parsed_content("optimizer")
    x, y = (t.to(args.device) for t in _scenes(args, args.batch))
    network.train()

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(network(x), y[:, None]).backward()
        optimizer.step()

    step()
    times = [time_call(step) for _ in range(args.iterations)]
    return {"step_s": summary(times), "images_per_s": args.batch / statistics.median(times), "batch": args.batch}


def bundle_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One epoch of the bundle's own trainer (data loader, transforms, handlers) on written scenes."""
    data = workdir / "scenes"
    write_scenes(data, num_train=args.epoch_scenes, num_val=1, config=SceneConfig(size=args.size), seed=args.seed)
    make_datalist(data, dataset="scenes", val_fraction=0.2)  # the trainer's validator needs a split (never run)
    outputs = {"ckpt_dir": str(workdir / "models"), "output_dir": str(workdir / "eval")}
    once = {"dataset_dir": str(data), "max_epochs": 1, "val_interval": 1000, "validate_data": False, **outputs}
    config = _parser(args, once)
    trainer = config.get_parsed_content("train#trainer")
    from ignite.engine import Events

    stamps: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: stamps.append(time.perf_counter()))
    start = time.perf_counter()
    trainer.run()
    elapsed = time.perf_counter() - start
    images = len(stamps) * args.batch
    steady = (len(stamps) - 1) * args.batch / (stamps[-1] - stamps[0]) if len(stamps) > 1 else images / elapsed
    return {"epoch_s": elapsed, "iterations": len(stamps), "images": images, "images_per_s": steady}


def step_overhead(args: argparse.Namespace) -> dict[str, Any]:
    config = _parser(args, {})
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        model = config.get_parsed_content("network").eval()
    scheme = config.get_parsed_content("label_scheme")
    x, y = (t.to(args.device) for t in _scenes(args, 1))
    labels = y[:, None]
    threat = ThreatModel("linf", 8 / 255, unit="[0, 1] pixel units", clip_min=0.0, clip_max=1.0, mask="none")
    attack = IterativeFGSM(model, threat, steps=args.steps, scheme=scheme)

    def bare() -> None:
        bare_forward_backward(model, None, x, torch.where(y == 255, 0, y))

    timing = paired_steps(attack, x, labels, bare, args.repeats)
    steps, bares, paired = timing["steps"], timing["bares"], timing["paired"]
    return {
        "attack": f"IterativeFGSM(linf, eps=8/255, steps={args.steps}, clip [0, 1], no mask)",
        "input_shape": list(x.shape),
        "bare_forward_backward_s": summary(bares),
        "attack_step_s": summary(steps),
        "ratio": statistics.median(paired),
        "ratio_of_medians": statistics.median(steps) / statistics.median(bares),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_natural2d_") as tmp:
        bundle = bundle_throughput(args, Path(tmp))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return {
        "benchmark": "natural2d",
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "network": "Normalized(UNet(2, 3, 7, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), "
        "num_res_units=0, norm=batch)), the CPU demo profile",
        "config": config,
        "training": {"compute": compute_throughput(args), "bundle_trainer": bundle},
        "attack_step_overhead": step_overhead(args),
        "elapsed_s": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv), QUICK, run)


if __name__ == "__main__":
    sys.exit(main())
