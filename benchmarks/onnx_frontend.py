"""ONNX in and out, measured: compile time from an ONNX file against the PyTorch path, and
ONNX Runtime on our exported file against ONNX Runtime on the dense network.

    python -m benchmarks.onnx_frontend [--models las_resnet50] [--rounds 2]
                                       [--json results/onnx_frontend.json] [--no-readme]

Per model (seeded random weights, maskers calibrated to r = 0.5, 224x224, batch 1, 2 threads),
each measurement in its own process (``benchmarks._isolate``), the rounds interleaved:

* ``torch``: ``las_compiler.compile(model)`` (torch.export, import, compile), seconds;
* ``onnx``: ``export_onnx`` (its own time), then ``las_compiler.compile_onnx(file)`` (load,
  check, import, compile), seconds; its outputs and masks against PyTorch's;
* ``ort_las``: ONNX Runtime on the exported file (every ``ai.las`` op through its standard-op
  body, dense compute + mask multiply), median ms, and ``ort_dense``: ONNX Runtime on the
  dense network (what ``benchmarks.e2e`` times), median ms.

Goal (issue 24): compile time from ONNX within 20 % of the PyTorch path (median of rounds).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import e2e
from ._isolate import run_isolated
from ._readme import replace_section
from .peers import run_metadata, write_json_atomic

MODULE = "benchmarks.onnx_frontend"
RATE = 0.5
REPEATS = 20
GOAL = 1.20
README = Path(__file__).with_name("README.md")


def measure(kind: str, model: str) -> dict:
    """(Child process) one measurement of one model."""
    import numpy as np
    import torch

    import las_compiler

    torch.set_num_threads(2)
    net, x, _ = e2e.build(model, e2e.SNET, RATE)
    if kind == "torch":
        compiled = las_compiler.compile(net, x, "host")
        return {"compile_s": compiled.metadata["compile_seconds"]}
    with tempfile.TemporaryDirectory(prefix="las-onnx-bench-") as tmp:
        path = Path(tmp, "model.onnx")
        start = time.perf_counter()
        las_compiler.export_onnx(net, x, path)
        export_s = time.perf_counter() - start
        if kind == "onnx":
            compiled = las_compiler.compile_onnx(path, "host")
            out, masks = compiled.run_with_masks(x.numpy())
            with torch.no_grad():
                ref = las_compiler.frontend.ExportableLASResNet(net)(x)
            return {"compile_s": compiled.metadata["compile_seconds"], "export_s": export_s,
                    "max_rel_err": e2e.relative_error(out, ref[0].numpy()),
                    "masks_equal": all(np.array_equal(m, r.numpy())
                                       for m, r in zip(masks, ref[1:], strict=True)),
                    "file_mb": path.stat().st_size / 1e6}
        if kind == "ort_las":
            from las_compiler.dense_peers import ort_session

            session = ort_session(path)
        elif kind == "ort_dense":
            from las_compiler.dense_peers import dense_network, onnx_session

            session = onnx_session(dense_network(net), x)
        else:
            raise ValueError(f"unknown measurement {kind!r}")
        from ._isolate import quiet_timing, timed_runs

        feed = {session.get_inputs()[0].name: np.ascontiguousarray(x.numpy())}
        return quiet_timing(lambda: timed_runs(lambda: session.run(None, feed), REPEATS))


KINDS = ("torch", "onnx", "ort_las", "ort_dense")


def run(models, rounds: int, log) -> list[dict]:
    rows = []
    for model in models:
        results: dict[str, list[dict]] = {k: [] for k in KINDS}
        for r in range(rounds):
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                log(f"[onnx] {model} round {r + 1}: {kind}")
                results[kind].append(run_isolated(f"{MODULE}.measure",
                                                  {"kind": kind, "model": model},
                                                  timeout=1800))
        torch_s = [m["compile_s"] for m in results["torch"]]
        onnx_s = [m["compile_s"] for m in results["onnx"]]
        rows.append({
            "model": model,
            "torch_compile_s": statistics.median(torch_s), "onnx_compile_s":
                statistics.median(onnx_s),
            "ratio": statistics.median(onnx_s) / statistics.median(torch_s),
            "ratio_rounds": [o / t for o, t in zip(onnx_s, torch_s, strict=True)],
            "export_s": statistics.median(m["export_s"] for m in results["onnx"]),
            "file_mb": results["onnx"][0]["file_mb"],
            "max_rel_err": max(m["max_rel_err"] for m in results["onnx"]),
            "masks_equal": all(m["masks_equal"] for m in results["onnx"]),
            "ort_las_ms": min(m["median_ms"] for m in results["ort_las"]),
            "ort_dense_ms": min(m["median_ms"] for m in results["ort_dense"]),
            "raw": results,
        })
    return rows


def summarise(rows: list[dict], meta: dict) -> str:
    lines = [f"{meta['date']}, {meta.get('cpu', '?')}, 2 "
             f"threads, {meta['rounds']} interleaved rounds, each measurement in its own "
             f"process, commit {meta.get('commit')}.", "",
             "| model | compile from PyTorch (s) | compile from ONNX (s) | ONNX / PyTorch "
             "(each round) | export (s) | file MB | compiled vs PyTorch | ORT on our file "
             "(ms) | ORT dense (ms) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rounds = ", ".join(f"{v:.2f}" for v in r["ratio_rounds"])
        agree = f"{r['max_rel_err']:.1e}, masks " + ("equal" if r["masks_equal"] else "differ")
        lines.append(f"| {e2e.ARCHITECTURES.get(r['model'], r['model'])} | "
                     f"{r['torch_compile_s']:.1f} | {r['onnx_compile_s']:.1f} | "
                     f"{r['ratio']:.2f} ({rounds}) | {r['export_s']:.1f} | {r['file_mb']:.0f} "
                     f"| {agree} | {r['ort_las_ms']:.1f} | {r['ort_dense_ms']:.1f} |")
    lines.append("")
    for r in rows:
        verdict = "met" if r["ratio"] <= GOAL else "missed"
        lines.append(f"- {r['model']}: compile time from ONNX / from PyTorch (goal <= "
                     f"{GOAL:.2f}): {r['ratio']:.2f} -> {verdict}")
    lines += ["", "Compile times are the artifacts' `compile_seconds` (from the call to the "
              "compiled module: export + import + build for PyTorch; load + checks + import + "
              "build for ONNX). ORT on our file computes every LAS block densely through the "
              "`ai.las` reference body (masker, dense convs, mask multiply); ORT dense is the "
              "dense network `benchmarks.e2e` times. Max relative error: compiled from ONNX "
              "vs PyTorch, logits."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onnx_frontend",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="las_resnet50")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default="results/onnx_frontend.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    models = [m for m in args.models.split(",") if m]
    meta = run_metadata(REPEATS, args.rounds, KINDS)
    meta.update(benchmark="ONNX frontend: compile time and ONNX Runtime on the exported file",
                rounds=args.rounds, commit=e2e._commit())
    rows = run(models, args.rounds, lambda m: print(m, file=sys.stderr, flush=True))
    write_json_atomic(args.json, {"meta": meta, "rows": rows})
    markdown = summarise(rows, meta) + f"\n\nJSON: `{args.json}`."
    print(markdown)
    if not args.no_readme:
        given = sys.argv[1:] if argv is None else list(argv)
        command = " ".join(["python -m benchmarks.onnx_frontend",
                            *(a for a in given if a != "--no-readme")])
        replace_section("onnx", f"ONNX frontend (`{command}`)", markdown, README)
    return 0


if __name__ == "__main__":
    from benchmarks.onnx_frontend import main as _main

    sys.exit(_main())
