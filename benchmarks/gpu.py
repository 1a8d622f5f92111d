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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/gpu.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    rows = predictions()
    write_json_atomic(args.json, {"rate": RATE, "rows": rows})
    markdown = summarise(rows)
    print(markdown)
    if not args.no_readme:
        from ._readme import replace_section

        replace_section("gpu", "GPU, predicted (`python -m benchmarks.gpu`)",
                        markdown + f"\n\nJSON: `{args.json}`.")
    return 0


if __name__ == "__main__":
    from benchmarks.gpu import main as _main

    sys.exit(_main())
