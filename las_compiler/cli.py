"""The ``las`` command line: argument parsing and printing only; the work is in the API.

Bad input ends with one ``las: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from .models import DEFAULT_GRANULARITY, MODELS


def _input_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not 'N' or 'HxW'") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"input size {text!r} is not 'N' or 'HxW'")
    return values


def _rate(text: str) -> float | None:
    if text == "none":
        return None
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"rate {text} is not in [0, 1] (or 'none')")
    return value


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="las_resnet50", choices=sorted(MODELS))
    parser.add_argument("--snet", default=DEFAULT_GRANULARITY,
                        help="S per stage ('4-4-2-1') or per block ('4-4-4-...-1')")
    parser.add_argument("--rate", type=_rate, default=0.5,
                        help="calibrate maskers to this activation rate ('none': keep weights)")
    parser.add_argument("--checkpoint", default=None, help="our, torchvision or LASNet state_dict")
    parser.add_argument("--input-size", type=_input_size, default=(224, 224), help="N or HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)


def _cmd_reference(args: argparse.Namespace) -> int:
    from .reference_job import run_reference

    report = run_reference(args.model, args.snet, args.rate, args.input_size, args.batch,
                           args.checkpoint, args.seed)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="las", description="Compiler for latency-aware spatially dynamic networks."
    )
    sub = parser.add_subparsers(dest="command")
    ref = sub.add_parser("reference", help="run the PyTorch reference sparse executor and report")
    _add_model_args(ref)
    ref.add_argument("--json", action="store_true", help="print the report as JSON")
    ref.set_defaults(func=_cmd_reference)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["reference"]  # the main job; becomes `compile` when the compiler lands
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        parser.exit(2, f"las: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
