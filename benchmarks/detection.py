"""Detection backbone: LAS-ResNet-101 C2-C5 at a COCO input size, against the dense backbone.

    python -m benchmarks.detection --json results/detection.json [--quick] [--no-readme]

The paper's detection results use LAS-ResNet-101 (official configuration ``4471``: S_net
4-4-7-1, target activation 0.5) as the backbone of Faster R-CNN / RetinaNet / Mask R-CNN at
~800x1333. Here the backbone alone, random weights (``torch.manual_seed``), maskers calibrated
to r = 0.5 on 2 random images, batch 1, 2 threads, every system in its own process (the
machinery of :mod:`benchmarks.e2e`, same statistics):

* ``las``: ``las_compiler.compile`` of the backbone (its four feature maps and every mask);
* ``tvm_dense``: the same compiler with every block static;
* ``onnxruntime``, ``openvino``, ``torch_eager`` (channels_last): the dense backbone ("vs best
  dense": the fastest dense system of the run, ours included).

Beside the CPU measurement, the latency predictor's dense and dynamic figures for the same
backbone on a Jetson TX2, a GTX 1080 and a V100 (the paper's devices; their profiles are the
data-sheet ones in ``las_compiler.predictor.profiles``, not measured here). ``--quick``:
LAS-ResNet-50, 400x667, 5 repeats, one round. Writes JSON and the ``detection`` section of
``benchmarks/README.md`` unless ``--no-readme``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import e2e
from .peers import write_json_atomic

MODEL, SNET, RATE, SIZE = "las_resnet101", "4-4-7-1", 0.5, (800, 1333)
QUICK = {"model": "las_resnet50", "size": (400, 667), "repeats": 5, "rounds": 1}
SYSTEMS = ("onnxruntime", "openvino", "torch_eager", "tvm_dense", "las")
DEVICES = ("tx2", "gtx1080", "v100")


def plan(model: str, size: tuple[int, int], systems: Sequence[str] = SYSTEMS) -> list[dict]:
    base = {"model": model, "snet": SNET, "height": size[0], "width": size[1],
            "backbone": True}
    return [{**base, "rate": RATE if system == "las" else None, "system": system}
            for system in systems]


def predictions(model: str, size: tuple[int, int], devices: Sequence[str] = DEVICES) -> list:
    """The predictor's dense / dynamic backbone latency on each device (and this host)."""
    from las_compiler.predictor import get_hardware
    from las_compiler.predictor.network import predict_network

    rows = []
    for device in ("host", *devices):
        pred = predict_network(get_hardware(device), model, SNET, RATE, *size, backbone=True)
        rows.append({"hardware": device, "dense_ms": pred.dense_ms,
                     "dynamic_ms": pred.dynamic_ms, "ratio": pred.ratio})
    return rows


def summarise(rows: list[dict], predicted: list[dict], meta: dict) -> str:
    model = rows[0]["model"]
    size = f"{rows[0]['height']}x{rows[0]['width']}"
    by_system = {r["system"]: r for r in rows}
    ort = by_system.get("onnxruntime", {}).get("median_ms")
    dense = min((r["median_ms"] for r in rows if r["system"] != "las"
                 and r.get("median_ms") is not None), default=None)
    lines = [f"{meta.get('date', '?')}, {meta.get('cpu', '?')}, 2 threads, median of "
             f"{meta['repeats']} runs, each system in its own process, the fastest of "
             f"{meta['rounds']} round(s)" + (f", commit {meta['commit']}" if meta.get("commit")
                                             else "") + ".", "",
             f"### {e2e.ARCHITECTURES.get(model, model)} backbone (C2-C5), S_net {SNET}, "
             f"batch 1, {size}", "",
             "| system | r (target) | r (actual) | median ms | vs ORT dense | vs best dense "
             "| compile s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            ms = f"failed: {r['error'][:120]}".replace("|", "/")
        else:
            ms = e2e._fmt(r.get("median_ms"), ".1f") + ("*" if r.get("contended") else "")
        best = r["median_ms"] / dense if r.get("median_ms") and dense else None
        lines.append(f"| {r['system']} | {e2e._fmt(r['rate'], 'g', 'dense')} "
                     f"| {e2e._fmt(r.get('actual_rate'), '.3f')} | {ms} "
                     f"| {e2e._fmt(r['median_ms'] / ort if r.get('median_ms') and ort else None, '.2f')} "  # noqa: E501
                     f"| {e2e._fmt(best, '.2f')} | {e2e._fmt(r.get('compile_seconds'), '.1f')} |")
    lines += ["", f"Predicted (latency model, r = {RATE}, same backbone and size):", "",
              "| hardware | dense ms | dynamic ms | dynamic / dense |", "|---|---|---|---|"]
    for p in predicted:
        lines.append(f"| {p['hardware']} | {p['dense_ms']:.1f} | {p['dynamic_ms']:.1f} "
                     f"| {p['ratio']:.2f} |")
    lines += ["", "r (actual): mean over the blocks of the compiled masks on the timed image. "
              "GPU rows are predictions from data-sheet profiles (no GPU here); the host row "
              "is the predictor's view of this CPU, to compare with the measured ones."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/detection.json")
    parser.add_argument("--quick", action="store_true",
                        help="LAS-ResNet-50 at 400x667, 5 repeats, one round")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 10)")
    parser.add_argument("--rounds", type=int, default=None, help="full rounds (default 2)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    model = QUICK["model"] if args.quick else MODEL
    size = QUICK["size"] if args.quick else SIZE
    repeats = args.repeats or (QUICK["repeats"] if args.quick else 10)
    rounds = args.rounds or (QUICK["rounds"] if args.quick else 2)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    configs = plan(model, size)
    meta = e2e.metadata(repeats, SYSTEMS, args.quick)
    meta.update(benchmark=f"{model} detection backbone, {size[0]}x{size[1]}, batch 1",
                rounds=rounds)
    rows = e2e.best_of_rounds([e2e.run(configs, repeats, log) for _ in range(rounds)])
    predicted = predictions(model, size)
    meta["wall_seconds"] = round(time.perf_counter() - start, 1)
    failures = {r["system"]: r["error"] for r in rows if r.get("error")}
    path = write_json_atomic(args.json, {"meta": meta, "rows": rows, "predicted": predicted,
                                         "failures": failures})
    log(f"[detection] wrote {path} ({meta['wall_seconds']:.0f} s)")
    markdown = summarise(rows, predicted, meta)
    print(markdown)
    if not args.no_readme:
        from ._readme import replace_section

        command = "python -m benchmarks.detection" + (" --quick" if args.quick else "")
        replace_section("detection", f"Detection backbone (`{command}`)",
                        markdown + f"\n\nJSON: `{args.json}`.")
    return 1 if failures else 0


if __name__ == "__main__":
    from benchmarks.detection import main as _main

    sys.exit(_main())
