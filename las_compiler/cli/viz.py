"""``las viz``: a picture of each stage's active patches over the input image."""

from __future__ import annotations

import argparse
import json

from .common import add_json, add_threads, subcommand


def run(args: argparse.Namespace) -> int:
    from ..deploy import load, read_input
    from ..viz import display_image, mask_figure, stage_panels

    compiled = load(args.artifact, args.threads)
    x = read_input(args.image, compiled.metadata["input"]["shape"], args.seed)
    _, masks = compiled.run_with_masks(x)
    panels = stage_panels(compiled.metadata, masks, args.index)
    title = (f"{compiled.metadata['model']} S_net={compiled.metadata['snet']}"
             + (f"  {args.image}" if args.image else "  (random input)"))
    path = mask_figure(display_image(x, args.index), panels, args.output, title)
    stages = {f"stage {p.stage}": p.activation for p in panels}
    if args.json:
        print(json.dumps({"png": str(path), "activation": stages}, indent=1))
    else:
        print(f"{path}: " + "  ".join(f"{k} {'static' if v is None else f'{v:.0%}'}"
                                      for k, v in stages.items()))
    return 0


def register(sub) -> None:
    parser = subcommand(sub, "viz", "draw each stage's active patches over the input (PNG)")
    parser.add_argument("artifact", help="directory written by `las compile`")
    parser.add_argument("--image", default=None, help=".npy array or image file (random if absent)")
    parser.add_argument("-o", "--output", default="masks.png", help="PNG to write")
    parser.add_argument("--index", type=int, default=0, help="which image of the batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    add_threads(parser)
    add_json(parser)
    parser.set_defaults(func=run)
