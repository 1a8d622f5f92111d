"""Argument types and option groups shared by the ``las`` subcommands."""

from __future__ import annotations

import argparse


def input_size(text: str) -> tuple[int, int]:
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


def rate(text: str) -> float | None:
    if text == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {text!r} is not a number (or 'none')") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"rate {text} is not in [0, 1] (or 'none')")
    return value


def add_model_args(parser: argparse.ArgumentParser, checkpoint: bool = True) -> None:
    """--model, --snet, --rate, [--checkpoint], --input-size, --batch, --seed."""
    from ..models import DEFAULT_GRANULARITY, MODELS

    parser.add_argument("--model", default="las_resnet50", choices=sorted(MODELS))
    parser.add_argument("--snet", default=DEFAULT_GRANULARITY,
                        help="S per stage ('4-4-2-1') or per block ('4-4-4-...-1')")
    parser.add_argument("--rate", type=rate, default=0.5,
                        help="calibrate maskers to this activation rate ('none': keep weights)")
    if checkpoint:
        parser.add_argument("--checkpoint", default=None,
                            help="our, torchvision or LASNet state_dict")
    parser.add_argument("--input-size", type=input_size, default=(224, 224), help="N or HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def subcommand(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand parser whose ``--help`` shows every option's default."""
    return sub.add_parser(name, help=help_text, description=help_text,
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
