"""``las predict`` / ``las select-s``: predicted dense vs dynamic latency, and S per stage;
``las predict --calibrate`` measures this machine and stores its profile."""

from __future__ import annotations

import argparse
import json
import sys

from .common import fraction, input_size, positive_int, subcommand


def _hardware(spec: str):
    from ..predictor import get_hardware, host_profile

    hw = get_hardware(spec)
    note = ""
    if spec.lower() == "host" and not host_profile()[1]:
        note = ("host profile is nominal (uncalibrated): run `las predict --calibrate` for "
                "measured numbers")
    if hw.kind == "gpu":
        note = ("GPU kernels are modelled with the tiles of our CUDA rules; no GPU has timed "
                "them yet, so these figures are unvalidated")
    return hw, note


def predict(args: argparse.Namespace) -> int:
    from ..hardware_calibration import calibrate_and_save
    from ..predictor.network import predict_network

    if args.calibrate:
        path = calibrate_and_save(args.output, log=lambda m: print(m, file=sys.stderr))
        print(f"host profile written to {path}")
        return 0
    hw, note = _hardware(args.hardware)
    h, w = args.input_size
    pred = predict_network(hw, args.model, args.snet, args.rate,
                           h, w, args.batch, backbone=args.backbone)
    report = {**pred.to_dict(), "input": [args.batch, 3, h, w], "note": note}
    print(json.dumps(report, indent=1) if args.json else format_predict(report))
    return 0


def select_s(args: argparse.Namespace) -> int:
    from ..predictor.network import select_granularity

    hw, note = _hardware(args.hardware)
    h, w = args.input_size
    sel = select_granularity(hw, args.model, args.rate, args.per,
                             height=h, width=w, batch=args.batch)
    report = {**sel.to_dict(), "input": [args.batch, 3, h, w], "note": note}
    print(json.dumps(report, indent=1) if args.json else format_select(report))
    return 0


def format_predict(report: dict) -> str:
    lines = [f"{report['model']} S_net={report['S_net']} r={report['rate']} on "
             f"{report['hardware']} (input {report['input']})"]
    if report["note"]:
        lines.append(f"note: {report['note']}")
    lines.append(f"{'block':<12}{'S':>3} {'pipeline':<14}{'dense ms':>10}{'dynamic ms':>12}"
                 f"{'ratio':>8}")
    for b in report["blocks"]:
        lines.append(f"{b['block']:<12}{b['S']:>3} {b['pipeline']:<14}{b['dense_ms']:>10.3f}"
                     f"{b['dynamic_ms']:>12.3f}{b['ratio']:>8.2f}")
    lines.append(f"{'network':<30}{report['dense_ms']:>10.3f}{report['dynamic_ms']:>12.3f}"
                 f"{report['ratio']:>8.2f}   (stem/pool/classifier {report['fixed_ms']:.3f} ms "
                 f"in both)")
    return "\n".join(lines)


def format_select(report: dict) -> str:
    per = report["per"]
    lines = [f"{report['model']} r={report['rate']} on {report['hardware']}: best S per {per} "
             f"-> S_net {report['S_net']}, predicted ratio {report['network']['ratio']:.2f} "
             f"({report['network']['dynamic_ms']:.3f} vs {report['network']['dense_ms']:.3f} "
             f"ms dense)"]
    if report["note"]:
        lines.append(f"note: {report['note']}")
    for c in report["choices"]:
        alternatives = "  ".join(f"S={s}: {ms / c['dense_ms']:.2f}" for s, ms in c["by_S"].items())
        lines.append(f"{per} {c[per]}: S={c['S']}  (latency / dense: {alternatives})")
    return "\n".join(lines)


def _add_common(parser: argparse.ArgumentParser) -> None:
    from ..models import MODELS
    from ..predictor.profiles import BUILTIN_NAMES

    parser.add_argument("--hardware", default="host",
                        help=f"{', '.join(BUILTIN_NAMES)}, or a profile .json")
    parser.add_argument("--model", default="las_resnet50", choices=sorted(MODELS),
                        help="architecture")
    parser.add_argument("--rate", type=fraction, default=0.5, help="activation rate in [0, 1]")
    parser.add_argument("--input-size", type=input_size, default="224x224", help="N or HxW")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def register(sub) -> None:
    from ..models import DEFAULT_GRANULARITY

    parser = subcommand(sub, "predict", "predicted dense vs dynamic latency per block")
    _add_common(parser)
    parser.add_argument("--snet", default=DEFAULT_GRANULARITY,
                        help="S per stage ('4-4-2-1') or per block")
    parser.add_argument("--backbone", action="store_true",
                        help="the detection backbone: no classifier")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine and store its profile (a few minutes)")
    parser.add_argument("-o", "--output", default=None,
                        help="with --calibrate: profile path (default: the user cache)")
    parser.set_defaults(func=predict)
    parser = subcommand(sub, "select-s", "best S per stage (or block) by predicted latency")
    _add_common(parser)
    parser.add_argument("--per", choices=("stage", "block"), default="stage",
                        help="one S per stage or per block")
    parser.set_defaults(func=select_s)
