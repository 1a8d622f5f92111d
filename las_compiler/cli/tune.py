"""``las tune``: tune a model's kernels for a target into ``tuning_logs/<target>/``."""

from __future__ import annotations

import argparse
import json
import time

from .common import add_json, add_model_args, out_stages, positive_int, subcommand


def run(args: argparse.Namespace) -> int:
    from ..compiler import resolve_target
    from ..models import prepare_model
    from ..tuning.tune import format_results, tune_model

    target = resolve_target(args.target)
    start = time.perf_counter()
    prepared = prepare_model(args.model, args.snet, args.rate, args.input_size, args.batch,
                             None, args.seed, out_stages(args))
    model, x = prepared.model, prepared.example
    rate = 0.5 if prepared.rate is None else prepared.rate
    results, directory = tune_model(model, x, target, args.trials, args.tuning_logs,
                                    args.cost_model, rate, args.rpc_tracker, args.rpc_key,
                                    args.seed, rpc_timeout=args.rpc_timeout, bar=not args.json)
    if args.json:
        print(json.dumps([vars(r) for r in results], indent=1))
    else:
        print(format_results(results))
        print(f"tuning log: {directory} ({time.perf_counter() - start:.0f} s)")
    return 0


def register(sub) -> None:
    from ..tuning.cost_model import COST_MODELS

    parser = subcommand(sub, "tune", "tune every kernel of a model (meta_schedule, resumable)")
    add_model_args(parser, checkpoint=False)
    parser.add_argument("--target", default="host", help="'host', a TVM tag or a target JSON")
    parser.add_argument("--trials", type=positive_int, default=16,
                        help="measured candidates per kernel")
    parser.add_argument("--tuning-logs", "--log", dest="tuning_logs", default=None,
                        help="tuning-log directory (default: tuning_logs/<target name>/; "
                             "--log is the old spelling)")
    parser.add_argument("--cost-model", default="seeded", choices=COST_MODELS,
                        help="how candidates are ranked before measuring")
    parser.add_argument("--rpc-tracker", default=None, help="host:port of an RPC tracker")
    parser.add_argument("--rpc-key", default=None, help="device key registered at the tracker")
    parser.add_argument("--rpc-timeout", type=positive_int, default=60,
                        help="seconds any wait for the tracker or a remote run may take")
    add_json(parser)
    parser.set_defaults(func=run)
