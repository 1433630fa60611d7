"""Benchmark randomized smoothing: noise-sample throughput against bare batched forwards, and memory against n.

Usage::

    python scripts/bench_certify.py [--quick] [--shape 64 64 64] [--batch 8] [--rounds 7] [--threads N]
        [--output bundles/brats_unet3d/eval/bench_certify.json]

The network is the CPU demo's (``configs/cpu_demo.json``: MONAI UNet, channels 16-32-64-128, strides 2-2-2, two
residual units, instance norm, 4 MR series in, 4 classes out) with random weights; the input is one synthetic
z-scored case. Prints one JSON object and writes it to ``--output``.

Method:

* **Throughput ratio.** Samples per second of :meth:`SegmentationSmoother.class_counts` (noise draw, forward through
  the inferer, class map, vote counting) divided by forwards per second of the bare model on a batch of the same size
  with noise drawn beforehand, both under ``torch.no_grad`` in one process. The two alternate ``--rounds`` times
  (each round: one bare batch, one smoother batch) and ``ratio`` is the median of the per-round ratios, which cancels
  slow drifts of the load on a shared machine. Measured for the direct model and through a sliding window.
* **Memory against n.** Peak resident memory (``ru_maxrss``) after one :meth:`certify` at ``n = --n-small`` and then
  after one at ``n = --n-large`` on the same volume, in this process: the peak can only grow, so
  ``peak_ratio`` = peak after the large run / peak after the small one is 1.0 when n costs no memory. The growth of
  the peak over the resident memory before the first run is given too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import monai
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from torch import nn

from robustseg.certification import SegmentationSmoother

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "bundles" / "brats_unet3d" / "eval" / "bench_certify.json"
QUICK = {"shape": [16, 16, 16], "sw_shape": [24, 16, 16], "sw_roi": 16, "batch": 2, "rounds": 2, "n_small": 4}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for smoke tests (numbers mean little)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="direct input (one window)")
    parser.add_argument("--sw-shape", type=int, nargs=3, default=[80, 96, 80], help="volume for the sliding window")
    parser.add_argument("--sw-roi", type=int, default=64, help="sliding-window roi_size (the CPU demo's)")
    parser.add_argument("--batch", type=int, default=8, help="noise samples per forward pass")
    parser.add_argument("--rounds", type=int, default=7, help="alternating (bare, smoother) rounds after a warm-up")
    parser.add_argument("--n-small", type=int, default=100, help="n of the first memory run")
    parser.add_argument("--n-large", type=int, default=1000, help="n of the second memory run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic data")
    return parser


def demo_network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = UNet(3, 4, 4, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2, norm="instance")
    return net.eval()


def synthetic_case(shape: list[int], seed: int) -> torch.Tensor:
    """A z-scored 4-channel volume, zero outside an ellipsoidal 'brain'."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij"))
    brain = (grid**2).sum(0) <= 0.8
    return torch.randn((1, 4, *shape), generator=generator) * brain


def max_rss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def throughput(name: str, model: nn.Module, inferer: Any, x: torch.Tensor, args: argparse.Namespace) -> dict:
    smoother = SegmentationSmoother(model, 0.25, inferer=inferer, batch_size=args.batch)
    generator = torch.Generator().manual_seed(args.seed)
    noisy = x + 0.25 * torch.randn((args.batch, *x.shape[1:]), generator=generator)

    def bare() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            inferer(noisy, model) if inferer is not None else model(noisy)
        return time.perf_counter() - start

    def smoothed() -> float:
        start = time.perf_counter()
        smoother.class_counts(x, args.batch, generator)
        return time.perf_counter() - start

    bare(), smoothed()  # warm-up
    bare_s, smooth_s = [], []
    for _ in range(args.rounds):
        bare_s.append(bare())
        smooth_s.append(smoothed())
    ratios = [b / s for b, s in zip(bare_s, smooth_s, strict=True)]  # (samples/s smoothed) / (forwards/s bare)
    return {
        "name": name,
        "input": list(x.shape),
        "batch": args.batch,
        "bare_forward_s": statistics.median(bare_s),
        "smoother_batch_s": statistics.median(smooth_s),
        "samples_per_s": args.batch / statistics.median(smooth_s),
        "bare_forwards_per_s": args.batch / statistics.median(bare_s),
        "ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(bare_s) / statistics.median(smooth_s),
        "rounds": args.rounds,
    }


def memory(model: nn.Module, x: torch.Tensor, args: argparse.Namespace) -> dict:
    smoother = SegmentationSmoother(model, 0.25, batch_size=args.batch)
    before = current_rss_mib()
    out: dict[str, Any] = {"input": list(x.shape), "batch": args.batch, "rss_before_mib": before}
    for key, n in (("small", args.n_small), ("large", args.n_large)):
        start = time.perf_counter()
        smoother.certify(x, n0=args.batch, n=n, alpha=1e-4, tau=0.75)
        out[f"n_{key}"] = n
        out[f"peak_after_n_{key}_mib"] = max_rss_mib()
        out[f"seconds_n_{key}"] = time.perf_counter() - start
    out["peak_ratio"] = out["peak_after_n_large_mib"] / out["peak_after_n_small_mib"]
    out["peak_growth_over_start_ratio"] = (out["peak_after_n_large_mib"] - before) / max(
        out["peak_after_n_small_mib"] - before, 1e-9
    )
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.n_large = 10 * args.n_small
    if args.threads:
        torch.set_num_threads(args.threads)
    model = demo_network(args.seed)
    x = synthetic_case(args.shape, args.seed)
    sw = SlidingWindowInferer(roi_size=[args.sw_roi] * 3, sw_batch_size=4, overlap=0.25)
    report = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "config": {**{k.replace("-", "_"): v for k, v in vars(args).items() if k != "output"}, "quick": args.quick},
        "throughput": [
            throughput("direct", model, None, x, args),
            throughput("sliding_window", model, sw, synthetic_case(args.sw_shape, args.seed + 1), args),
        ],
        "memory": memory(model, x, args),
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
