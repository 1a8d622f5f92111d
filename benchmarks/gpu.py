"""GPU latency of LAS-ResNets: predicted from our CUDA rules' tiles; measured where a GPU ran.

    python -m benchmarks.gpu [--json results/gpu.json] [--no-readme]

The GPU issues' goals, predicted by the latency model (``las_compiler.predictor``) with the
tiles of ``schedules/cuda`` on each device profile (data-sheet figures, uncalibrated), each
block on the pipeline ``auto`` picks for a GPU (``block_pipelines.auto_candidates("gpu")``):

* LAS-ResNet-101 detection backbone, batch 1, 800x1333, r = 0.5: dynamic / dense <= 0.80
  with S_net 4-4-2-1, <= 0.70 with 4-4-7-1;
* LAS-ResNet-50 (4-4-2-1), batch 128, 224x224, r = 0.5: <= 0.65.

"dense" here is the same network with our dense kernels on the same model, not cuDNN: the
goals compare against cuDNN, which only ``scripts/gpu_check.sh`` on a GPU can measure. Rows
measured on a GPU are added to ``benchmarks/README.md`` by hand from that script's table.

A second table gives, per block geometry of those networks and every S, the idle pixel slots
of each pipeline's worst conv kernel on the CUDA rules (``schedules.cuda.idle_slots``; issue
25: at most 25 %) and what ``auto`` picks there on the goal devices.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .peers import write_json_atomic

DEVICES = ("tx2", "gtx1080", "v100", "orin", "h100")
GOALS = (  # issue 25's: 4-4-2-1 and 4-4-7-1 backbones, LAS-ResNet-50 at batch 128
    {"name": "LAS-ResNet-101 4-4-2-1 backbone, batch 1, 800x1333", "model": "las_resnet101",
     "snet": "4-4-2-1", "batch": 1, "size": (800, 1333), "backbone": True, "goal": 0.80},
    {"name": "LAS-ResNet-101 4-4-7-1 backbone, batch 1, 800x1333", "model": "las_resnet101",
     "snet": "4-4-7-1", "batch": 1, "size": (800, 1333), "backbone": True, "goal": 0.70},
    {"name": "LAS-ResNet-50 4-4-2-1, batch 128, 224x224", "model": "las_resnet50",
     "snet": "4-4-2-1", "batch": 128, "size": (224, 224), "backbone": False, "goal": 0.65},
)
RATE = 0.5


def predictions(devices: Sequence[str] = DEVICES) -> list[dict]:
    from las_compiler.predictor import get_hardware
    from las_compiler.predictor.network import predict_network

    rows = []
    for goal in GOALS:
        for device in devices:
            p = predict_network(get_hardware(device), goal["model"], goal["snet"], RATE,
                                *goal["size"], batch=goal["batch"], backbone=goal["backbone"])
            rows.append({"case": goal["name"], "hardware": device, "dense_ms": p.dense_ms,
                         "dynamic_ms": p.dynamic_ms, "ratio": p.ratio, "goal": goal["goal"]})
    return rows


def summarise(rows: list[dict]) -> str:
    lines = ["Predicted (latency model with the CUDA rules' tiles, r = 0.5; not measured: no "
             "GPU was available). \"dense\": our dense kernels on the same model.", "",
             "| case | hardware | dense ms | dynamic ms | dynamic / dense | goal |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "met" if r["ratio"] <= r["goal"] else "missed"
        lines.append(f"| {r['case']} | {r['hardware']} | {r['dense_ms']:.1f} | "
                     f"{r['dynamic_ms']:.1f} | {r['ratio']:.3f} | <= {r['goal']} ({verdict}) |")
    return "\n".join(lines)


IDLE_NETWORKS = (("las_resnet101", (800, 1333), 1), ("las_resnet50", (224, 224), 128))
IDLE_PIPELINES = ("fused", "pixel_rows", "halo", "whole")
IDLE_DEVICES = ("v100", "gtx1080", "tx2")


def idle_slots() -> list[dict]:
    """One row per (distinct block geometry of :data:`IDLE_NETWORKS`, S): each pipeline's
    worst idle fraction and auto's pick per device at r = 0.5."""
    from las_compiler.block_pipelines import PIPELINES
    from las_compiler.predictor import get_hardware
    from las_compiler.predictor.block import best_pipeline
    from las_compiler.predictor.layers import network_blocks
    from las_compiler.schedules.cuda.idle_slots import pipeline_idle

    hardware = {d: get_hardware(d) for d in IDLE_DEVICES}
    rows, seen = [], set()
    for model, size, batch in IDLE_NETWORKS:
        for layer in network_blocks(model, *size, batch):
            key = (layer.height, layer.width, layer.stride)
            if key in seen:
                continue
            seen.add(key)
            for s in range(1, 8):
                if not layer.fits(s):
                    continue
                block = layer.geometry(s)
                idle = {p: pipeline_idle(PIPELINES[p], block) for p in IDLE_PIPELINES
                        if PIPELINES[p].applies(block)}
                auto = {}
                for device, hw in hardware.items():
                    pick = best_pipeline(hw, layer, s, RATE).pipeline
                    auto[device] = (pick, pipeline_idle(PIPELINES[pick], block)[1])
                rows.append({"map": f"{layer.height}x{layer.width}/{layer.stride}",
                             "network": f"{model} {size[0]}x{size[1]} b{batch}", "S": s,
                             "idle": {p: v for p, (_, v) in idle.items()},
                             "worst_kernel": {p: k for p, (k, _) in idle.items()},
                             "auto": auto})
    return rows


def summarise_idle(rows: list[dict]) -> str:
    def pct(v: float) -> str:
        return f"{100 * v:.0f} %" + (" (!)" if v > 0.25 else "")

    over = [(r, d) for r in rows for d, (_, v) in r["auto"].items() if v > 0.25]
    lines = ["Idle pixel slots of the CUDA rules' conv kernels (worst kernel of each pipeline, "
             "every cell active; `(!)`: over issue 25's 25 %), and the pipeline `auto` picks at "
             "r = 0.5 on each goal device with its idle share. Map: input size / stride.", "",
             f"| network | map | S | {' | '.join(IDLE_PIPELINES)} | "
             f"{' | '.join(f'auto {d}' for d in IDLE_DEVICES)} |",
             "|---|---|---|" + "---|" * (len(IDLE_PIPELINES) + len(IDLE_DEVICES))]
    for r in rows:
        cells = [pct(r["idle"][p]) if p in r["idle"] else "-" for p in IDLE_PIPELINES]
        picks = [f"{p} {pct(v)}" for p, v in (r["auto"][d] for d in IDLE_DEVICES)]
        lines.append(f"| {r['network']} | {r['map']} | {r['S']} | {' | '.join(cells)} | "
                     f"{' | '.join(picks)} |")
    lines += ["", f"auto's picks over 25 %: {len(over)} of {len(rows) * len(IDLE_DEVICES)} "
                  "(geometry, S, device) cases" + (": " + "; ".join(
                      f"{d} {r['network'].split()[0]} {r['map']} S={r['S']} {r['auto'][d][0]}"
                      for r, d in over) if over else "") + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/gpu.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    rows, idle = predictions(), idle_slots()
    write_json_atomic(args.json, {"rate": RATE, "rows": rows, "idle_slots": idle})
    markdown = summarise(rows)
    idle_markdown = summarise_idle(idle)
    print(markdown + "\n\n" + idle_markdown)
    if not args.no_readme:
        from ._readme import replace_section

        replace_section("gpu", "GPU, predicted (`python -m benchmarks.gpu`)",
                        markdown + f"\n\nJSON: `{args.json}`.")
        replace_section("gpu-idle", "GPU, idle pixel slots (`python -m benchmarks.gpu`)",
                        idle_markdown + f"\n\nJSON: `{args.json}` (`idle_slots`).")
    return 0


if __name__ == "__main__":
    from benchmarks.gpu import main as _main

    sys.exit(_main())
