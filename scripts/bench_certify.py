"""Benchmark randomized smoothing: noise-sample throughput against bare batched forwards, and memory against n.

Usage::

    python scripts/bench_certify.py [--quick] [--shape 64 64 64] [--batch 8] [--batches 4] [--rounds 7] [--threads N]
        [--output bundles/brats_unet3d/eval/bench_certify.json]

The networks are the bundle's, built from its config with random weights: the CPU demo's
(``train.json`` + ``configs/cpu_demo.json``: MONAI UNet, channels 16-32-64-128, 64³ windows) for every measurement,
and the default BraTS network (``train.json``: channels 32-64-128-256-320) for one more direct throughput figure
(``--no-bundle-network`` skips it). The input is one synthetic z-scored 4-channel case. Prints one JSON object and
writes it to ``--output``.

Method:

* **Throughput ratio.** Samples per second of :meth:`SegmentationSmoother.class_counts` streaming ``--batches``
  batches (noise draw, forward through the inferer, class map, vote counting; as ``certify`` streams its ``n``
  samples) divided by forwards per second of the bare model on as many batches of the same size with noise drawn
  beforehand, both under ``torch.no_grad`` in one process. The two alternate ``--rounds`` times (each round: the bare
  batches, then the smoother's) and ``ratio`` is the median of the per-round ratios, which cancels slow drifts of the
  load on a shared machine. Measured for the direct model and through a sliding window.
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
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from torch import nn

from robustseg.certification import SegmentationSmoother

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE = REPO_ROOT / "bundles" / "brats_unet3d"
DEFAULT_OUTPUT = BUNDLE / "eval" / "bench_certify.json"
CPU_DEMO = REPO_ROOT / "configs" / "cpu_demo.json"
QUICK = {
    "shape": [32, 32, 32],  # the default network halves it four times
    "sw_shape": [40, 32, 32],
    "sw_roi": 32,
    "batch": 2,
    "batches": 2,
    "rounds": 2,
    "n_small": 4,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for smoke tests (numbers mean little)")
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="direct input (one window)")
    parser.add_argument("--sw-shape", type=int, nargs=3, default=[80, 96, 80], help="volume for the sliding window")
    parser.add_argument("--sw-roi", type=int, default=None, help="sliding-window roi_size (default: the CPU demo's)")
    parser.add_argument("--batch", type=int, default=8, help="noise samples per forward pass")
    parser.add_argument("--batches", type=int, default=4, help="batches streamed per timing (as certify streams n)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating (bare, smoother) rounds after a warm-up")
    parser.add_argument("--n-small", type=int, default=100, help="n of the first memory run")
    parser.add_argument("--n-large", type=int, default=1000, help="n of the second memory run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the synthetic data")
    parser.add_argument(
        "--no-bundle-network", dest="bundle_network", action="store_false", help="skip the default BraTS network"
    )
    return parser


def bundle_network(seed: int, *overlays: Path) -> tuple[nn.Module, list[int]]:
    """The bundle's ``network_def`` (with ``overlays`` applied) in eval mode, random weights, and its window size."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), *map(str, overlays)])
    parser["bundle_root"] = str(BUNDLE)
    torch.manual_seed(seed)
    return parser.get_parsed_content("network_def").eval(), list(parser.get_parsed_content("sw_roi_size"))


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
            for _ in range(args.batches):
                inferer(noisy, model) if inferer is not None else model(noisy)
        return (time.perf_counter() - start) / args.batches

    def smoothed() -> float:
        start = time.perf_counter()
        smoother.class_counts(x, args.batch * args.batches, generator)
        return (time.perf_counter() - start) / args.batches

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
        "batches_per_round": args.batches,
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
    model, demo_roi = bundle_network(args.seed, CPU_DEMO)
    args.sw_roi = args.sw_roi or demo_roi[0]
    x = synthetic_case(args.shape, args.seed)
    sw = SlidingWindowInferer(roi_size=[args.sw_roi] * 3, sw_batch_size=4, overlap=0.25)
    throughputs = [
        throughput("direct", model, None, x, args),
        throughput("sliding_window", model, sw, synthetic_case(args.sw_shape, args.seed + 1), args),
    ]
    if args.bundle_network:
        throughputs.append(throughput("bundle_network_direct", bundle_network(args.seed)[0], None, x, args))
    report = {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "config": {**{k.replace("-", "_"): v for k, v in vars(args).items() if k != "output"}, "quick": args.quick},
        "throughput": throughputs,
        "memory": memory(model, x, args),
    }
    text = json.dumps(report, indent=2)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
