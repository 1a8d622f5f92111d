"""``las bench``: time an exported artifact, and optionally its dense peers."""

from __future__ import annotations

import argparse
import json

from .common import (
    Progress,
    add_board,
    add_json,
    add_threads,
    add_weights,
    load_with_weights,
    positive_int,
    subcommand,
)


def run(args: argparse.Namespace) -> int:
    from ..dense_peers import PEERS, measure_dense_peer
    from ..deploy import read_input

    progress = Progress(not args.json)
    if args.vs == "dense" and (args.rpc or args.tracker):
        raise ValueError("--vs dense times the dense peers here; on a board time the artifact "
                         "alone")
    compiled = load_with_weights(args)
    try:
        x = read_input(None, compiled.metadata["input"]["shape"], args.seed)
        progress(f"timing the artifact ({args.repeats} runs)")
        rows = {"las": compiled.benchmark(x, repeat=args.repeats)["median_ms"]}
    finally:
        getattr(compiled, "close", lambda: None)()
    if args.vs == "dense":
        for peer in PEERS:
            progress(f"timing the dense network in {peer} (a fresh process: build, "
                     f"{'export, ' if peer != 'torch_eager' else ''}{args.repeats} runs)")
            rows[f"dense_{peer}"] = measure_dense_peer(peer, compiled.metadata, args.repeats,
                                                       compiled.threads)
    progress.done()
    if args.json:
        print(json.dumps({"median_ms": rows, "threads": compiled.threads_in_effect}, indent=1))
        return 0
    meta = compiled.metadata
    print(f"{meta['model']}  S_net={meta['snet']}  input={meta['input']['shape']}  "
          f"(median of {args.repeats} runs, {compiled.threads_in_effect} threads)")
    for name, ms in rows.items():
        ratio = f"  LAS / this = {rows['las'] / ms:.2f}" if name != "las" else ""
        print(f"{name:<20}{ms:9.2f} ms{ratio}")
    return 0


def register(sub) -> None:
    parser = subcommand(sub, "bench", "time an exported artifact (and dense peers)")
    parser.add_argument("artifact", help="directory written by `las compile`")
    add_weights(parser)
    parser.add_argument("--vs", choices=("none", "dense"), default="none",
                        help="'dense': also time the dense network in ONNX Runtime, OpenVINO and "
                             "PyTorch")
    parser.add_argument("--repeats", type=positive_int, default=20, help="timed runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    add_threads(parser)
    add_board(parser)
    add_json(parser)
    parser.set_defaults(func=run)
