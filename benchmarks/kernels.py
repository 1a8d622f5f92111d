"""Where every millisecond goes: each kernel of a compiled network, its share of the pass and
the fraction of this machine's FMA ceiling it reaches.

    python -m benchmarks.kernels [--models las_resnet50] [--rate 0.5] [--batch 1]
                                 [--json results/kernels.json] [--no-readme]

For each model, in its own process (``benchmarks._isolate``): the dense build (every block
static) and the LAS build at activation rate ``--rate`` (maskers calibrated as in
``benchmarks.e2e``), 224x224. Each build is timed uninstrumented (the VM's time evaluator,
median), then traced call by call (``CompiledModel.trace``, the Relax VM's instrument hook,
5 passes after a warm-up). A kernel's FLOPs come from its lowered PrimFunc
(``estimate_tir_flops``), specialised to the shapes it was called with, so a sparse kernel is
credited with the work of the patches that were active on this input, not with the dense work
it skips.

The FMA ceiling is measured in the same process before and after the trace
(``hardware_calibration.measure_fma_ceiling``: 12 independent vector FMA chains per thread,
registers only, the machine's widest vectors, 2 threads): kernels are rated against the
higher of the two. The hook costs about 10 us a call, so the traced total exceeds the
uninstrumented latency; the tables give both.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import e2e
from ._isolate import run_isolated
from ._readme import replace_section
from .peers import run_metadata, write_json_atomic

MODULE = "benchmarks.kernels"
TRACE_PASSES = 5
TOP_ROWS = 25  # kernels listed per build; the rest are summed in one row
CONV_KERNELS = ("conv*", "gather_conv*", "fused_block*")  # rated against the FMA ceiling
README = Path(__file__).with_name("README.md")


def kernel_flops(func, shapes: Sequence[tuple]) -> float:
    """FLOPs of one call of the lowered PrimFunc ``func`` with tensor arguments of these
    ``shapes`` (its parameters in order), symbolic dimensions bound to the call's values."""
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    from las_compiler.tuning.database import _symbolic_params, specialize_counts

    symbolic = _symbolic_params(func)
    if symbolic:
        func = specialize_counts(func, [shapes[i] for i in symbolic])
    return float(estimate_tir_flops(tvm.IRModule({"main": func})))


def _lowered_kernels(net, x, static_blocks) -> dict:
    """name -> PrimFunc of the kernels the compiler builds for ``net`` (phases 1-4, the same
    names ``las_compiler.compile`` gives them)."""
    import tvm

    from las_compiler.frontend import import_torch
    from las_compiler.phases import lowering_passes
    from las_compiler.target import host_target

    mod = import_torch(net, x, static_blocks, "auto")
    with tvm.transform.PassContext(opt_level=3):
        mod = lowering_passes(host_target(), 0.5)(mod)
    return {gv.name_hint: f for gv, f in mod.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc)}


def measure(model: str, system: str, rate: float | None = None, batch: int = 1,
            repeats: int = 20) -> dict:
    """(Child process) one build of one model: latency, FMA ceiling, per-kernel rows."""
    import numpy as np
    import torch

    import las_compiler
    from las_compiler.hardware_calibration import measure_fma_ceiling
    from las_compiler.target import host_target, simd_bits, target_features

    torch.set_num_threads(2)
    net, x, _ = e2e.build(model, e2e.SNET, rate, batch=batch)
    static = range(e2e.num_blocks(net)) if system == "tvm_dense" else ()
    cm = las_compiler.compile(net, x, "host", static_blocks=static)
    kernels = _lowered_kernels(net, x, static)
    target = host_target()
    lanes = simd_bits(target_features(target)) // 32
    ceiling = [measure_fma_ceiling(target, 2, lanes)]
    latency = cm.benchmark(x, repeat=repeats)
    calls = cm.trace(x, TRACE_PASSES)
    ceiling.append(measure_fma_ceiling(target, 2, lanes))
    masks = cm.run_with_masks(x)[1] if system == "las" else []
    per_kernel: dict[str, dict] = {}
    flops_cache: dict[tuple, float] = {}
    for name, ms, shapes in calls:
        row = per_kernel.setdefault(name, {"kernel": name, "calls": 0, "ms": 0.0, "flops": 0.0})
        row["calls"] += 1
        row["ms"] += ms
        if name in kernels and any(fnmatch.fnmatchcase(name, p) for p in CONV_KERNELS):
            key = (name, shapes)
            if key not in flops_cache:
                flops_cache[key] = kernel_flops(kernels[name], shapes)
            row["flops"] += flops_cache[key]
    rows = []
    for row in per_kernel.values():
        ms = row["ms"] / TRACE_PASSES
        rows.append({"kernel": row["kernel"], "kind": e2e.kernel_kind(row["kernel"]),
                     "calls": row["calls"] // TRACE_PASSES, "ms": ms,
                     "gflop": row["flops"] / TRACE_PASSES / 1e9 if row["flops"] else None,
                     "gflops": row["flops"] / TRACE_PASSES / ms / 1e6
                     if row["flops"] and ms > 0 else None})
    rows.sort(key=lambda r: -r["ms"])
    return {"model": model, "system": system, "rate": rate, "batch": batch,
            "median_ms": latency["median_ms"], "traced_ms": sum(r["ms"] for r in rows),
            "fma_ceiling_gflops": max(ceiling), "fma_ceiling_runs": ceiling,
            "actual_rate": float(np.mean([np.mean(m) for m in masks])) if masks else None,
            "blocks": [(b["name"], b["S"], b["pipeline"]) for b in cm.metadata["blocks"]],
            "kernels": rows}


# -- reporting ----------------------------------------------------------------------------------


def _fmt(value, spec: str) -> str:
    return e2e._fmt(value, spec)


def kernel_table(result: dict, top: int = TOP_ROWS) -> list[str]:
    """Markdown lines for one build: header facts, then one row per kernel."""
    ceiling = result["fma_ceiling_gflops"]
    traced = result["traced_ms"]
    name = e2e.ARCHITECTURES.get(result["model"], result["model"])
    build = "dense (every block static)" if result["system"] == "tvm_dense" else \
        f"LAS {e2e.SNET}, r = {result['rate']:g}" + (
            f" (actual {result['actual_rate']:.3f})" if result.get("actual_rate") else "")
    conv = [r for r in result["kernels"] if r.get("gflop")]
    conv_ms = sum(r["ms"] for r in conv)
    conv_gflop = sum(r["gflop"] for r in conv)
    lines = [f"### {name}, {build}, batch {result['batch']}", "",
             f"Latency {result['median_ms']:.2f} ms (median, uninstrumented); traced "
             f"{traced:.2f} ms over {sum(r['calls'] for r in result['kernels'])} VM calls. "
             f"FMA ceiling {ceiling:.0f} GFLOP/s (2 threads). Conv kernels: "
             f"{conv_ms:.2f} ms ({conv_ms / traced:.0%} of the traced time), "
             f"{conv_gflop:.2f} GFLOP at {conv_gflop / conv_ms * 1e3:.0f} GFLOP/s = "
             f"{conv_gflop / conv_ms * 1e3 / ceiling:.0%} of the ceiling.", "",
             "| kernel | calls | ms | share | GFLOP | GFLOP/s | of FMA ceiling |",
             "|---|---|---|---|---|---|---|"]
    rows = result["kernels"]
    for r in rows[:top]:
        lines.append(f"| {r['kernel']} | {r['calls']} | {r['ms']:.3f} | {r['ms'] / traced:.1%} "
                     f"| {_fmt(r['gflop'], '.3f')} | {_fmt(r['gflops'], '.0f')} "
                     f"| {_fmt(r['gflops'] and r['gflops'] / ceiling, '.0%')} |")
    rest = rows[top:]
    if rest:
        ms = sum(r["ms"] for r in rest)
        lines.append(f"| {len(rest)} others | {sum(r['calls'] for r in rest)} | {ms:.3f} "
                     f"| {ms / traced:.1%} | | | |")
    by_kind: dict[str, float] = {}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + r["ms"]
    lines += ["", "By kind: " + ", ".join(f"{k} {v:.2f} ms ({v / traced:.0%})"
                                          for k, v in sorted(by_kind.items(),
                                                             key=lambda kv: -kv[1])) + "."]
    return lines


def _host_cpu() -> str:
    from las_compiler.target import host_target

    return str(host_target().attrs.get("mcpu", "?"))


def summarise(results: list[dict], meta: dict) -> str:
    lines = [f"{meta.get('date', '?')}, {meta.get('cpu', '?')} (LLVM CPU "
             f"`{meta.get('host_target', '?')}`), 2 threads, commit "
             f"{meta.get('commit')}. Kinds: kernel (the network's compute), mask (maskers, "
             "compaction, index lists), runtime (VM builtins: allocation, shapes).", ""]
    for result in results:
        if result.get("error"):
            lines += [f"### {result['model']} {result['system']}: failed: {result['error']}", ""]
            continue
        lines += [*kernel_table(result), ""]
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="las_resnet50",
                        help=f"comma-separated, from {','.join(e2e.ARCHITECTURES)}")
    parser.add_argument("--rate", type=float, default=0.5, help="the LAS build's rate")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="results/kernels.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in e2e.ARCHITECTURES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; from {', '.join(e2e.ARCHITECTURES)}")
    if not 0.0 <= args.rate <= 1.0 or args.batch < 1 or args.repeats < 1:
        parser.error("--rate must lie in [0, 1]; --batch and --repeats must be >= 1")
    results = []
    for model in models:
        for system, rate in (("tvm_dense", None), ("las", args.rate)):
            start = time.perf_counter()
            try:
                result = run_isolated(f"{MODULE}:measure",
                                      {"model": model, "system": system, "rate": rate,
                                       "batch": args.batch, "repeats": args.repeats},
                                      timeout=e2e.TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - report the failure, keep going
                result = {"model": model, "system": system, "error": e2e.error_text(err)}
            print(f"[kernels] {model} {system}: "
                  + (f"{result['median_ms']:.2f} ms" if "median_ms" in result
                     else result["error"]) + f" ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr, flush=True)
            results.append(result)
    meta = {**run_metadata(args.repeats, 1, ["tvm_dense", "las"]), "commit": e2e._commit(),
            "benchmark": "per-kernel time of compiled LAS-ResNets vs the FMA ceiling",
            "host_target": _host_cpu()}
    path = write_json_atomic(args.json, {"meta": meta, "results": results})
    markdown = summarise(results, meta)
    print(markdown)
    if not args.no_readme:
        replace_section("kernels", "Where the time goes (`python -m benchmarks.kernels`)",
                        markdown + f"\n\nJSON: `{args.json}`.", README)
    print(f"[kernels] wrote {path}", file=sys.stderr)
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    from benchmarks.kernels import main as _main

    sys.exit(_main())
