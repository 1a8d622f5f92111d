"""Registers, shared memory and occupancy of every CUDA kernel of a LAS-ResNet-50, per GPU.

    python -m benchmarks.gpu_resources [--json results/gpu_resources.json] [--no-readme]

Issue 25's ptxas level of verification, as a table: the kernels the compiler emits for
LAS-ResNet-50 4-4-2-1 at 224x224 (every distinct layer shape; the pipelines ``fused``,
``pixel_rows``, ``halo`` and ``dense``, the scans also carrying a length, and the chained
maskers, a projected block's too), scheduled by the CUDA rules for each goal GPU, assembled
by ``ptxas -v`` for its arch (nvcc for sm_90; LLVM's NVPTX and CUDA 12's ptxas for
sm_61/62/70), one row per kernel family: threads per block, registers per thread, shared
memory per block (double-buffered stages counted twice), spilled bytes, and the occupancy
those allow (``schedules.cuda.limits.occupancy``: resident warps over the SM's most, and what
limits it). No GPU runs here: these are what the assembler and the data sheets say.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .peers import write_json_atomic

TARGETS = (("tx2", "nvidia/jetson-tx2"), ("gtx1080", "nvidia/geforce-gtx-1080"),
           ("v100", "nvidia/nvidia-v100"), ("h100", "nvidia/nvidia-h100"))
PIPELINES = ("fused", "pixel_rows", "halo", "dense")


def kernels(target) -> dict[str, tuple[str, object]]:
    """``{entry name: (kernel kind, scheduled PrimFunc)}`` of LAS-ResNet-50's blocks."""
    from las_compiler.block_pipelines import PIPELINES as ALL
    from las_compiler.block_pipelines import Scan
    from las_compiler.masker_chain import links
    from las_compiler.op import get_kernel
    from las_compiler.predictor.layers import network_blocks
    from las_compiler.schedules import pipeline_fits, schedule

    funcs, seen, before = {}, set(), None
    for layer, s in zip(network_blocks("las_resnet50", 224, 224),
                        [4] * 3 + [4] * 4 + [2] * 6 + [1] * 3, strict=True):
        block = layer.geometry(s)
        calls = [(step.kernel, args) for name in PIPELINES
                 if ALL[name].applies(block) and pipeline_fits(ALL[name], block, target)
                 for step in ALL[name].steps_for(block)
                 # a block's later scans carry the earlier lengths
                 for args in (step.args(block),
                              *(((*step.args(block), 1),) if isinstance(step, Scan) else ()))]
        if links(block, "fused", block, "fused"):
            calls += [("masker", (block.patches, block.in_channels, 3, False)),
                      ("masker", (block.patches, block.in_channels, 2, True))]
        if before is not None and block.projected and links(before, "fused", block, "fused"):
            # a stage's first block, pooling the previous stage's changed cells
            calls.append(("masker", (block.patches, block.in_channels, 1, True,
                                     before.patches)))
        before = block
        for kind, args in calls:
            if (kind, args) in seen:
                continue
            seen.add((kind, args))
            label = kind if kind != "masker" or len(args) == 2 else "masker (chained)"
            funcs[f"k{len(funcs)}"] = (label, schedule(get_kernel(kind)(*args), target))
    return funcs


def measure(device: str, tag: str) -> list[dict]:
    from las_compiler.compiler import resolve_target
    from las_compiler.schedules.cuda import toolchain
    from las_compiler.schedules.cuda.limits import block_resources, occupancy

    target = resolve_target(tag)
    missing = toolchain.toolchain_available(target)
    if missing:
        raise SystemExit(f"{device}: {missing}")
    funcs = kernels(target)
    text, fmt = toolchain.device_code({name: f for name, (_, f) in funcs.items()}, target)
    report = toolchain.assemble(text, fmt, target)
    arch = toolchain.arch_number(target)
    rows = []
    for name, (kind, func) in funcs.items():
        threads = block_resources(func)["threads"]
        for entry in report:
            if entry.name == f"{name}_kernel" or entry.name.startswith(f"{name}_kernel_"):
                share, limiter = occupancy(arch, threads, entry.registers, entry.shared_bytes)
                rows.append({"device": device, "arch": arch, "kernel": kind,
                             "entry": entry.name, "threads": threads,
                             "registers": entry.registers, "shared_bytes": entry.shared_bytes,
                             "spill_bytes": entry.spill_stores + entry.spill_loads,
                             "occupancy": share, "limited_by": limiter})
    return rows


def summarise(rows: list[dict]) -> str:
    def span(values, fmt="{}") -> str:
        lo, hi = min(values), max(values)
        return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"

    lines = ["Per GPU and kernel family of LAS-ResNet-50 4-4-2-1 (224x224, every layer shape; "
             "`fused`, `pixel_rows`, `halo`, `dense` and the chained maskers), from `ptxas -v` "
             "for the arch: threads per block, registers per thread, shared memory per block, "
             "spilled bytes, and occupancy (resident warps / the SM's most) with what limits "
             "it. Ranges over the family's kernels.", "",
             "| GPU | kernel | entries | threads | registers | shared KB | spills | occupancy "
             "| limited by |", "|---|---|---|---|---|---|---|---|---|"]
    for device in dict.fromkeys(r["device"] for r in rows):
        mine = [r for r in rows if r["device"] == device]
        for kind in sorted({r["kernel"] for r in mine}):
            group = [r for r in mine if r["kernel"] == kind]
            limiters = sorted({r["limited_by"] for r in group})
            lines.append(
                f"| {device} (sm_{group[0]['arch']}) | {kind} | {len(group)} | "
                f"{span([r['threads'] for r in group])} | "
                f"{span([r['registers'] for r in group])} | "
                f"{span([r['shared_bytes'] / 1024 for r in group], '{:.1f}')} | "
                f"{max(r['spill_bytes'] for r in group)} | "
                f"{span([round(100 * r['occupancy']) for r in group], '{} %')} | "
                f"{', '.join(limiters)} |")
    spills = [r for r in rows if r["spill_bytes"]]
    lines += ["", f"Kernels that spill: {len(spills)} of {len(rows)}" + (
        ": " + ", ".join(f"{r['device']} {r['kernel']} ({r['spill_bytes']} B)" for r in spills)
        if spills else "") + "."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_resources",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/gpu_resources.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    rows = [row for device, tag in TARGETS for row in measure(device, tag)]
    write_json_atomic(args.json, {"rows": rows})
    markdown = summarise(rows)
    print(markdown)
    if not args.no_readme:
        from ._readme import replace_section

        replace_section("gpu-ptxas", "GPU kernels as assembled (`python -m benchmarks"
                        ".gpu_resources`)", markdown + f"\n\nJSON: `{args.json}`.")
    return 0


if __name__ == "__main__":
    from benchmarks.gpu_resources import main as _main

    sys.exit(_main())
