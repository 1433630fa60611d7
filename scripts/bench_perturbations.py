"""Cost of every basis perturbation and corruption over one forward pass of the bundle's network on the same case.

Target (issue "Sensitivity-adaptive augmentation"): each op and corruption at most 0.2 x one forward pass of the
bundle's network on the same case. MRI ops and BraTS-C corruptions are timed on a phantom case at the demo's spacing
(4 sequences, padded to a multiple of 16) against the 3-D bundle's network (``train.json``'s UNet, the ``ratio``) and
its CPU demo UNet (``configs/cpu_demo.json``, 10x fewer weights: ``demo_ratio``); natural-image ops and corruptions on
a scene of the 2-D demo's crop size against the 2-D bundle's network and its demo UNet. Each is timed interleaved
with the forward passes in one process (``repeats`` rounds, medians), ops at magnitude 0.5, corruptions at severity 3.
``--device cuda`` times on a GPU. Prints JSON.

    python scripts/bench_perturbations.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

from robustseg.corruptions import BRATS_C, NATURAL_C, corrupt
from robustseg.data.phantom import PhantomConfig, generate_case
from robustseg.data.scenes import SceneConfig, SceneGenerator
from robustseg.sensitivity import MRI_OPS, NATURAL_OPS, perturb

REPO = Path(__file__).resolve().parents[1]
BRATS = REPO / "bundles" / "brats_unet3d" / "configs"
NATURAL = REPO / "bundles" / "natural2d_segmentation" / "configs"
TARGET = 0.2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians reported)")
    parser.add_argument("--spacing", type=float, default=3.0, help="phantom spacing in mm (the demos use 3)")
    parser.add_argument("--size", type=int, default=None, help="scene side (default: the 2-D demo's crop size)")
    parser.add_argument("--magnitude", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--severity", type=int, default=3, help="the corruptions' severity")
    parser.add_argument("--ops", nargs="*", default=None, help="a subset of ops and corruptions (default all)")
    return parser


def _network(files: list[Path], device: torch.device) -> tuple[torch.nn.Module, ConfigParser]:
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return parser.get_parsed_content("network_def").to(device).eval(), parser


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _ratios(
    forward: Callable[[], Any],
    demo: Callable[[], Any],
    work: dict[str, Callable[[], Any]],
    args: argparse.Namespace,
    device: torch.device,
) -> dict[str, dict[str, float]]:
    """Each of ``work`` timed against the bundle's ``forward`` and the ``demo`` UNet's, interleaved, medians of
    ``args.repeats`` rounds."""
    rows: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        forward()
        demo()
        for name, fn in work.items():
            fn()  # warm-up
            rounds = [(_time(forward, device), _time(demo, device), _time(fn, device)) for _ in range(args.repeats)]
            base, small, cost = (statistics.median(r[i] for r in rounds) for i in range(3))
            rows[name] = {
                "op_ms": 1e3 * cost,
                "forward_ms": 1e3 * base,
                "ratio": cost / base,
                "demo_forward_ms": 1e3 * small,
                "demo_ratio": cost / small,
            }
    return rows


def _ops(image: torch.Tensor, label: torch.Tensor, names: list[str], m: float) -> dict[str, Callable[[], Any]]:
    return {op: (lambda o=op: perturb(image, label, o, m)) for op in names}


def _corruptions(raw: torch.Tensor, names: list[str], severity: int, spacing: Any) -> dict[str, Callable[[], Any]]:
    return {c: (lambda n=c: corrupt(raw, n, severity, seed=0, spacing=spacing)) for c in names}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    chosen = set(args.ops) if args.ops else None

    net3d, _ = _network([BRATS / "train.json"], device)
    demo3d, _ = _network([BRATS / "train.json", REPO / "configs" / "cpu_demo.json"], device)
    case = generate_case(0, seed=0, config=PhantomConfig(spacing=args.spacing))
    volume = torch.as_tensor(case["image"], dtype=torch.float32)[None].to(device)
    pad = [p for s in reversed(volume.shape[2:]) for p in (0, (-s) % 16)]  # the bundle's UNet halves 4 times
    volume = F.pad(volume, pad)
    label3d = torch.zeros((1, 1, *volume.shape[2:]), dtype=torch.long, device=device)
    mri = [op for op in MRI_OPS if chosen is None or op in chosen]
    forward3d, small3d = (lambda: net3d(volume)), (lambda: demo3d(volume))
    mri_rows = _ratios(forward3d, small3d, _ops(volume, label3d, mri, args.magnitude), args, device)
    brats_c = [c for c in BRATS_C if chosen is None or c in chosen]
    spacing = (args.spacing,) * 3
    brats_rows = _ratios(forward3d, small3d, _corruptions(volume, brats_c, args.severity, spacing), args, device)

    net2d, _ = _network([NATURAL / "train.json"], device)
    demo2d, parser2d = _network([NATURAL / "train.json", NATURAL / "cpu_demo.json"], device)
    size = args.size or int(parser2d.get_parsed_content("crop_size")[0])
    rgb, classes = SceneGenerator(SceneConfig(size=size), seed=0).scene(0)
    image = (torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0)[None].to(device)
    label2d = torch.from_numpy(classes).long()[None, None].to(device)
    natural = [op for op in NATURAL_OPS if chosen is None or op in chosen]
    forward2d, small2d = (lambda: net2d(image)), (lambda: demo2d(image))
    natural_rows = _ratios(forward2d, small2d, _ops(image, label2d, natural, args.magnitude), args, device)
    natural_c = [c for c in NATURAL_C if chosen is None or c in chosen]
    pixels = image * 255.0
    natural_c_rows = _ratios(forward2d, small2d, _corruptions(pixels, natural_c, args.severity, None), args, device)

    every = {**mri_rows, **natural_rows, **brats_rows, **natural_c_rows}
    return {
        "device": str(device),
        "platform": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "magnitude": args.magnitude,
        "mri_case": list(volume.shape),
        "natural_case": list(image.shape),
        "target_ratio": TARGET,
        "mri": mri_rows,
        "natural": natural_rows,
        "severity": args.severity,
        "brats_c": brats_rows,
        "natural_c": natural_c_rows,
        "over_target": sorted(op for op, row in every.items() if row["ratio"] > TARGET),
        "meets_target": all(row["ratio"] <= TARGET for row in every.values()),
        "over_target_against_demo_unet": sorted(op for op, row in every.items() if row["demo_ratio"] > TARGET),
    }


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(build_parser().parse_args(argv)), indent=1))


if __name__ == "__main__":
    main()
