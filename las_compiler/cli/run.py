"""``las run``: run an exported artifact on an image or ``.npy`` input."""

from __future__ import annotations

import argparse
import json

import numpy as np

from .common import (
    add_board,
    add_json,
    add_threads,
    add_weights,
    load_with_weights,
    positive_int,
    subcommand,
)


def run(args: argparse.Namespace) -> int:
    from ..deploy import read_input

    compiled = load_with_weights(args)
    try:
        x = read_input(args.image, compiled.metadata["input"]["shape"], args.seed)
        out, masks = compiled.run_with_masks(x, check_finite=not args.no_check_finite)
        threads = compiled.threads_in_effect
    finally:
        getattr(compiled, "close", lambda: None)()
    dynamic = [b for b in compiled.metadata["blocks"] if b["pipeline"] != "static"]
    result = {"activation": {b["name"]: float(m.mean()) for b, m in zip(dynamic, masks,
                                                                       strict=True)},
              "threads": threads}
    if compiled.output_names == ["logits"]:
        top = np.argsort(-out, axis=1)[:, : args.top]
        result["top"] = [[{"class": int(c), "logit": float(out[i, c])} for c in row]
                         for i, row in enumerate(top)]
    else:  # a backbone: what each feature map is, for the detector's neck
        result["features"] = {name: {"shape": list(o.shape), "mean": float(o.mean()),
                                     "max": float(o.max())}
                              for name, o in zip(compiled.output_names, out, strict=True)}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for i, row in enumerate(result.get("top", [])):
        classes = ", ".join(f"{e['class']} ({e['logit']:.3f})" for e in row)
        print(f"image {i}: top-{args.top} classes: {classes}")
    for name, f in result.get("features", {}).items():
        print(f"{name}: {'x'.join(map(str, f['shape']))}  mean {f['mean']:.4f}  "
              f"max {f['max']:.4f}")
    print("activation: " + "  ".join(f"{k} {v:.2f}" for k, v in result["activation"].items()))
    print(f"({result['threads']} TVM threads)")
    return 0


def register(sub) -> None:
    parser = subcommand(sub, "run", "run an exported artifact on an image or .npy input")
    parser.add_argument("artifact", help="directory written by `las compile`")
    add_weights(parser)
    parser.add_argument("--image", default=None, help=".npy array or image file (random if absent)")
    parser.add_argument("--top", type=positive_int, default=5, help="classes to print per image")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--no-check-finite", action="store_true",
                        help="skip the check that the input holds no NaN or infinite values")
    add_threads(parser)
    add_board(parser)
    add_json(parser)
    parser.set_defaults(func=run)
