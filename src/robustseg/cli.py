"""The ``robustseg`` command: ``robustseg audit BUNDLE_DIR ...`` and the other verbs (``robustseg --help``).

A robustseg error (a bundle lacking ids, a bad option, a checkpoint of another network, an output folder holding other
results) ends the output with its one message and exit status 2; ``--debug`` (or ``ROBUSTSEG_DEBUG=1``) shows the
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from robustseg.errors import debug_requested, discard_created, report, user_error

__all__ = ["build_parser", "main", "parse_args"]


def _attack(text: str) -> str | dict[str, Any]:
    """An attack name (``fgsm``) or a JSON spec (``{"name": "pgd", "steps": 20}``)."""
    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"--attack {text!r} is not valid JSON ({e}).") from None
        if not isinstance(spec, dict):
            raise argparse.ArgumentTypeError(f"--attack {text!r} must be a name or a JSON object.")
        return spec
    return text


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE (VALUE as JSON, else text) but got {text!r}.")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustseg",
        description="Audit and harden segmentation models: attacks, noise, corruptions and certification of any MONAI "
        "bundle.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    audit = verbs.add_parser(
        "audit",
        help="audit a MONAI bundle (ours, a model zoo bundle as downloaded, or your own): attacks and noise, "
        "per-region Dice, paired tests, self-checks; optionally corruptions and certification",
        description="Audit a MONAI bundle without editing it. Prints the contract mapping, writes the overlays it "
        "used next to the outputs (bundle_overlay.json, audit_settings.json) and the equivalent "
        "`python -m monai.bundle run` commands (audit_command.sh), then runs them.",
    )
    audit.add_argument("bundle_dir", help="the bundle's folder (holding configs/ and models/)")
    audit.add_argument("--dataset_dir", help="the data folder (the bundle's dataset_dir / data_file_base_dir)")
    audit.add_argument("--output_dir", help="where the audit writes (default: the bundle's eval/)")
    audit.add_argument("--checkpoint", help="the weights (default: the bundle's checkpoint, else models/model.pt)")
    audit.add_argument(
        "--tracking_uri", help="the MLflow store (default: MLFLOW_TRACKING_URI, else output_dir/mlflow.db)"
    )
    audit.add_argument(
        "--attack",
        action="append",
        type=_attack,
        dest="attacks",
        metavar="ATTACK",
        help='an attack name (fgsm, ifgsm, pgd, tifgsm) or a JSON spec such as \'{"name":"pgd","steps":20}\'; '
        "repeat for several (default: configs/attack.json's)",
    )
    audit.add_argument("--eps", type=float, nargs="+", help="attack budgets in the input's units")
    audit.add_argument("--norm", choices=("linf", "l2"), help="the attacks' norm")
    audit.add_argument("--certify", action="store_true", help="also certify by randomized smoothing")
    audit.add_argument(
        "--corruptions",
        action="store_true",
        help="also score the corruption benchmark: BraTS-C (or natural-image corruptions) at five severities",
    )
    audit.add_argument("--max_cases", type=int, help="score at most this many cases")
    audit.add_argument("--datalist", help="cases from this datalist (instead of the bundle's test data)")
    audit.add_argument("--split", default="testing", help="the --datalist split to score (default: testing)")
    audit.add_argument("--head", choices=("softmax", "sigmoid"), help="when the bundle's post-processing does not say")
    audit.add_argument("--transfer_from", help="a checkpoint of a second model: every attack is also transferred")
    audit.add_argument("--fresh", action="store_true", help="discard an earlier audit's results in the output folder")
    audit.add_argument(
        "--config_file", action="append", default=[], help="an overlay merged after the bundle's config (profiles)"
    )
    audit.add_argument("--set", action="append", type=_setting, default=[], metavar="KEY=VALUE", help="a config value")
    audit.add_argument("--dry_run", action="store_true", help="map the bundle and write the overlays, run nothing")

    verbs.add_parser("contract", help="print the bundle contract (docs/contract.md)")
    summary = verbs.add_parser("summary", help="summarise a bundle evaluation by region (ET, TC, WT)")
    summary.add_argument("rest", nargs=argparse.REMAINDER)
    datalist = verbs.add_parser("datalist", help="validate a BraTS or 2-D dataset copy and write its split datalist")
    datalist.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _audit(args: argparse.Namespace) -> int:
    from robustseg.workflows.audit import plan_audit, run_audit

    plan = plan_audit(
        args.bundle_dir,
        dataset_dir=args.dataset_dir,
        output_dir=args.output_dir,
        checkpoint=args.checkpoint,
        attacks=args.attacks,
        eps=args.eps,
        norm=args.norm,
        certify=args.certify,
        corruptions=args.corruptions,
        max_cases=args.max_cases,
        datalist=args.datalist,
        split=args.split,
        head=args.head,
        fresh=args.fresh,
        transfer_from=args.transfer_from,
        config_files=args.config_file,
        settings={**({"tracking_uri": args.tracking_uri} if args.tracking_uri else {}), **dict(args.set)},
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print(plan.describe())
        print(f"overlays and commands: {plan.output_dir} (bundle_overlay.json, audit_settings.json, audit_command.sh)")
        print("equivalent bundle runs:")
        for command in plan.commands:
            print(f"  {command}")
    if not args.dry_run:
        run_audit(plan)
    return 0


PASSED_ON = ("summary", "datalist")
"""Verbs whose arguments go unparsed to their own command line (argparse's REMAINDER drops a leading option)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line parsed; the arguments of :data:`PASSED_ON` verbs are left, whole, in ``rest``."""
    words = list(sys.argv[1:] if argv is None else argv)
    verb_at = next((i for i, a in enumerate(words) if not a.startswith("-")), None)
    passed_on: list[str] | None = None
    if verb_at is not None and words[verb_at] in PASSED_ON:
        passed_on, words = words[verb_at + 1 :], words[: verb_at + 1]
    args = build_parser().parse_args(words)
    if passed_on is not None:
        args.rest = passed_on
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    debug = args.debug or debug_requested()
    try:
        if args.verb == "audit":
            return _audit(args)
        if args.verb == "contract":
            from robustseg.contract import markdown

            sys.stdout.write(markdown())
            return 0
        if args.verb == "summary":
            from robustseg.workflows.summary import main as summary_main

            return summary_main(args.rest)
        from robustseg.data.cli import main as datalist_main

        return datalist_main(args.rest)
    except Exception as error:
        found = user_error(error)
        if found is None or debug:
            raise
        discard_created()
        print(report(found), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
