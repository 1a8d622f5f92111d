"""``las predict`` / ``las select-s``: predicted dense vs dynamic latency, and S per stage.

Also ``las predict --calibrate``: measure this machine (see ``predictor.calibrate``) and store
its profile where ``--hardware host`` finds it.
"""

from __future__ import annotations

from pathlib import Path

from .predictor import get_hardware, host_profile
from .predictor.network import predict_network, select_granularity
from .predictor.profiles import default_host_profile_path


def _hardware(spec: str):
    hw = get_hardware(spec)
    note = ""
    if spec.lower() == "host" and not host_profile()[1]:
        note = ("host profile is nominal (uncalibrated): run `las predict --calibrate` for "
                "measured numbers")
    if hw.kind == "gpu":
        note = ("GPU kernels are modelled with the tiles a CUDA rule would use; no CUDA rule "
                "exists yet, so these are not our kernels' measured behaviour")
    return hw, note


def predict_report(hardware: str, model: str, snet, rate: float, input_size=(224, 224),
                   batch: int = 1) -> dict:
    hw, note = _hardware(hardware)
    pred = predict_network(hw, model, snet, rate, input_size[0], input_size[1], batch)
    return {**pred.to_dict(), "input": [batch, 3, *input_size], "note": note}


def select_report(hardware: str, model: str, rate: float, per: str = "stage",
                  input_size=(224, 224), batch: int = 1) -> dict:
    hw, note = _hardware(hardware)
    sel = select_granularity(hw, model, rate, per, height=input_size[0], width=input_size[1],
                             batch=batch)
    return {**sel.to_dict(), "input": [batch, 3, *input_size], "note": note}


def calibrate(output: str | None = None, log=print) -> Path:
    """Measure this machine and write its profile (atomically)."""
    from .predictor.calibrate import calibrate_host
    from .predictor.profiles import nominal_host
    from .target import host_target

    profile = calibrate_host(nominal_host(), host_target(), log=log)
    return profile.save(output or default_host_profile_path())


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
