"""The ``las`` command line: argument parsing and printing only; the work is in the API.

Bad input ends with one ``las: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np

from .models import DEFAULT_GRANULARITY, MODELS

# las_compiler.transform.PIPELINES and "auto", without importing TVM here
PIPELINES = ("auto", "fused", "halo", "dense")


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


def _cmd_compile(args: argparse.Namespace) -> int:
    from .compile_job import run_compile

    report = run_compile(args.model, args.snet, args.rate, args.input_size, args.batch,
                         args.checkpoint, args.seed, args.target, args.output,
                         args.tuning_logs, args.pipeline, not args.no_dense, args.repeats,
                         args.dump_ir)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .bench_job import read_input
    from .compiler import load

    compiled = load(args.artifact)
    x = read_input(args.image, compiled.metadata["input"]["shape"], args.seed)
    logits, masks = compiled.run_with_masks(x)
    top = np.argsort(-logits, axis=1)[:, : args.top]
    result = {"top": [[{"class": int(c), "logit": float(logits[i, c])} for c in row]
                      for i, row in enumerate(top)],
              "activation": {b["name"]: float(m.mean()) for b, m in zip(
                  [b for b in compiled.metadata["blocks"] if b["pipeline"] != "static"], masks,
                  strict=True)}}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for i, row in enumerate(result["top"]):
        classes = ", ".join(f"{e['class']} ({e['logit']:.3f})" for e in row)
        print(f"image {i}: top-{args.top} classes: {classes}")
    print("activation: " + "  ".join(f"{k} {v:.2f}" for k, v in result["activation"].items()))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench_job import PEERS, measure_peer, read_input
    from .compiler import load

    compiled = load(args.artifact)
    x = read_input(None, compiled.metadata["input"]["shape"], args.seed)
    rows = {"las": compiled.benchmark(x, repeat=args.repeats)["median_ms"]}
    if args.vs == "dense":
        for peer in PEERS:
            rows[f"dense_{peer}"] = measure_peer(peer, compiled.metadata, args.repeats)
    if args.json:
        print(json.dumps({"median_ms": rows}, indent=1))
        return 0
    meta = compiled.metadata
    print(f"{meta['model']}  S_net={meta['snet']}  input={meta['input']['shape']}  "
          f"(median of {args.repeats} runs, 2 threads)")
    for name, ms in rows.items():
        ratio = f"  LAS / this = {rows['las'] / ms:.2f}" if name != "las" else ""
        print(f"{name:<20}{ms:9.2f} ms{ratio}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from . import predict_job

    if args.calibrate:
        path = predict_job.calibrate(args.output, log=lambda m: print(m, file=sys.stderr))
        print(f"host profile written to {path}")
        return 0
    rate = 0.5 if args.rate is None else args.rate
    report = predict_job.predict_report(args.hardware, args.model, args.snet, rate,
                                        args.input_size, args.batch)
    print(json.dumps(report, indent=1) if args.json else predict_job.format_predict(report))
    return 0


def _cmd_select_s(args: argparse.Namespace) -> int:
    from . import predict_job

    rate = 0.5 if args.rate is None else args.rate
    report = predict_job.select_report(args.hardware, args.model, rate, args.per,
                                       args.input_size, args.batch)
    print(json.dumps(report, indent=1) if args.json else predict_job.format_select(report))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune_job import run_tune
    from .tuning.tune import format_results

    rate = 0.5 if args.rate is None else args.rate
    results, directory, seconds = run_tune(
        args.model, args.snet, rate, args.input_size, args.batch, args.target, args.trials,
        args.log, args.cost_model, args.rpc_tracker, args.rpc_key, args.seed)
    if args.json:
        print(json.dumps([{**vars(r), "knobs": vars(r.knobs) if r.knobs else None}
                          for r in results], indent=1))
    else:
        print(format_results(results))
        print(f"tuning log: {directory} ({seconds:.0f} s)")
    return 0


def _add_predict_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hardware", default="host",
                        help="host, v100, gtx1080, tx2, nano, rtx3090, h100, tx2-cpu, or a "
                             "profile .json")
    parser.add_argument("--model", default="las_resnet50", choices=sorted(MODELS))
    parser.add_argument("--rate", type=_rate, default=0.5, help="activation rate in [0, 1]")
    parser.add_argument("--input-size", type=_input_size, default=(224, 224), help="N or HxW")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="las", description="Compiler for latency-aware spatially dynamic networks."
    )
    sub = parser.add_subparsers(dest="command")
    ref = sub.add_parser("reference", help="run the PyTorch reference sparse executor and report")
    _add_model_args(ref)
    ref.add_argument("--json", action="store_true", help="print the report as JSON")
    ref.set_defaults(func=_cmd_reference)

    comp = sub.add_parser("compile", help="compile a LAS-ResNet for a target, export, report")
    _add_model_args(comp)
    comp.add_argument("--target", default="host",
                      help="'host', a TVM tag (e.g. nvidia/jetson-tx2) or a target JSON object")
    comp.add_argument("-o", "--output", default=None,
                      help="artifact directory (default: out/<model>-<snet>)")
    comp.add_argument("--tuning-logs", default=None, help="meta_schedule database directory")
    comp.add_argument("--pipeline", default="auto", choices=PIPELINES,
                      help="kernel pipeline of every dynamic block ('auto': the compiler's "
                           "choice per block)")
    comp.add_argument("--no-dense", action="store_true",
                      help="skip compiling and timing the dense network for comparison")
    comp.add_argument("--repeats", type=int, default=30, help="timed runs per latency")
    comp.add_argument("--dump-ir", default=None, metavar="DIR",
                      help="write the IR after every pipeline phase to DIR")
    comp.add_argument("--json", action="store_true", help="print the report as JSON")
    comp.set_defaults(func=_cmd_compile)

    run = sub.add_parser("run", help="run an exported artifact on an image or .npy input")
    run.add_argument("artifact", help="directory written by `las compile`")
    run.add_argument("--image", default=None, help=".npy array or image file (random if absent)")
    run.add_argument("--top", type=int, default=5)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=_cmd_run)

    bench = sub.add_parser("bench", help="time an exported artifact (and dense peers)")
    bench.add_argument("artifact", help="directory written by `las compile`")
    bench.add_argument("--vs", choices=("none", "dense"), default="none",
                       help="'dense': also time the dense network in ONNX Runtime and PyTorch")
    bench.add_argument("--repeats", type=int, default=20)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_cmd_bench)

    pred = sub.add_parser("predict", help="predicted dense vs dynamic latency per block")
    _add_predict_args(pred)
    pred.add_argument("--snet", default=DEFAULT_GRANULARITY,
                      help="S per stage ('4-4-2-1') or per block")
    pred.add_argument("--calibrate", action="store_true",
                      help="measure this machine and store its profile (a few minutes)")
    pred.add_argument("-o", "--output", default=None,
                      help="with --calibrate: profile path (default: the user cache)")
    pred.set_defaults(func=_cmd_predict)

    sel = sub.add_parser("select-s", help="best S per stage (or block) by predicted latency")
    _add_predict_args(sel)
    sel.add_argument("--per", choices=("stage", "block"), default="stage")
    sel.set_defaults(func=_cmd_select_s)

    tune = sub.add_parser("tune", help="tune every kernel of a model (meta_schedule, resumable)")
    tune.add_argument("--model", default="las_resnet50", choices=sorted(MODELS))
    tune.add_argument("--snet", default=DEFAULT_GRANULARITY)
    tune.add_argument("--rate", type=_rate, default=0.5,
                      help="activation rate the representative patch counts assume")
    tune.add_argument("--input-size", type=_input_size, default=(224, 224))
    tune.add_argument("--batch", type=int, default=1)
    tune.add_argument("--target", default="host")
    tune.add_argument("--trials", type=int, default=16, help="measured candidates per kernel")
    tune.add_argument("--log", default=None,
                      help="tuning-log directory (default: tuning_logs/<target name>/)")
    tune.add_argument("--cost-model", default="seeded", choices=("seeded", "xgb", "random"))
    tune.add_argument("--rpc-tracker", default=None, help="host:port of an RPC tracker")
    tune.add_argument("--rpc-key", default=None, help="device key registered at the tracker")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--json", action="store_true")
    tune.set_defaults(func=_cmd_tune)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # torch.export's pytree emits a FutureWarning about its own internals on every export
    warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
    parser = build_parser()
    if not argv:
        argv = ["compile"]  # the main job: the default LAS-ResNet-50 for this CPU
    args = parser.parse_args(argv)
    if getattr(args, "batch", 1) < 1:
        parser.error(f"--batch must be >= 1, got {args.batch}")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        parser.exit(2, f"las: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
