"""The conv kernels' innermost loops per CPU, read from LLVM's assembly, and what they allow.

    python -m benchmarks.inner_loops [--cpus znver3,znver4,sapphirerapids,cortex-a57,cortex-a72]
                                     [--json results/inner_loops.json] [--no-readme]

Speed on a CPU we do not have (an AVX-512 machine in an AVX2 session, the Jetson TX2's
Cortex-A57, a Raspberry Pi 4's Cortex-A72) cannot be measured here, but the code that would
run there can be read. For every conv kernel of LAS-ResNet-50 4-4-2-1 (the dense build's and
the LAS build's, 224x224), scheduled by our rules for the CPU and compiled by LLVM, this finds
the hot loop (the full register tile's innermost loop: :func:`hot_loop`) and counts per
iteration: vector
FMAs, loads (vector, broadcast and scalar-lane loads), stack accesses (spills) and all
instructions, and the accumulators (distinct FMA destination registers).

From those and the core's published figures (:data:`CORES`: FMA latency and throughput, loads
per cycle, issue width; from the vendors' optimisation guides, rounded) a throughput bound per
iteration is the largest of: FMA issue, load issue, instruction issue, and the accumulator
chains' latency (``FMAs / accumulators x latency``). The predicted share of the FMA peak the
loop can reach is ``FMA cycles / that bound``. It says nothing of caches (weights streamed
from DRAM, a patch's staging) or of the loop's trip count, which the per-kernel table of
``benchmarks.kernels`` measures on the machine at hand. Nothing is run: this works on any
machine.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import e2e
from ._readme import replace_section
from .peers import write_json_atomic

README = Path(__file__).with_name("README.md")
CONV_KERNELS = ("conv1x1", "conv2d", "gather_conv3x3", "conv1x1_rows", "gather_conv3x3_rows",
                "conv1x1_scatter_add", "conv1x1_scatter_add_rows", "fused_block")


@dataclass(frozen=True)
class Core:
    """What bounds a register-tiled FMA loop on one core."""

    arch: str  # "x86" or "aarch64"
    fma_latency: int  # cycles from an FMA to a dependent one (same accumulator)
    fmas_per_cycle: float  # vector FMAs issued per cycle at the widest vector
    loads_per_cycle: float  # vector or broadcast loads per cycle
    issue_width: int  # instructions per cycle (dispatch)
    registers: int  # vector registers
    vector_bits: int


CORES = {
    # AMD Zen 3: two 256-bit FMA pipes, two 256-bit loads a cycle, 16 ymm
    "znver3": Core("x86", 4, 2.0, 2.0, 6, 16, 256),
    # AMD Zen 4: 512-bit FMAs run over two 256-bit pipes (one zmm FMA a cycle); two loads a
    # cycle (a zmm load takes both, a 32-bit broadcast one)
    "znver4": Core("x86", 4, 1.0, 2.0, 6, 32, 512),
    # Intel Sapphire Rapids (server): two 512-bit FMA ports, two 512-bit loads a cycle (a
    # third port takes narrower loads: its load bound is a lower bound)
    "sapphirerapids": Core("x86", 4, 2.0, 2.0, 6, 32, 512),
    # Arm Cortex-A57 (Jetson TX2's CPU cluster): one Q-form FMLA a cycle, one load pipe
    "cortex-a57": Core("aarch64", 10, 1.0, 1.0, 3, 32, 128),
    # Arm Cortex-A72 (Raspberry Pi 4): two 128-bit FP pipes, one load pipe
    "cortex-a72": Core("aarch64", 7, 2.0, 1.0, 3, 32, 128),
}
DEFAULT_CPUS = tuple(CORES)

_LABEL = re.compile(r"^(\.?[\w.$]+):", re.M)
_PATTERNS = {
    "x86": {"fma": r"\tvfn?madd\d+ps\t[^\n]*%[yz]mm\d+\n",
            "load": r"\t(?:vmovu?ps|vmovaps|vbroadcastss|vmovss)\t-?\w*\(",
            "fma_in_mem": r"\tvfn?madd\d+ps\t-?\w*\(",  # a memory (or {1toN}) operand
            "stack": r"\((?:%rsp|%rbp)\)",
            "dest": r"\tvfn?madd\d+ps\t[^\n]*,\s*(%[yz]mm\d+)\n"},
    "aarch64": {"fma": r"\tfmla\tv\d+\.4s",
                "load": r"\t(?:ldr\t[qs]\d+|ldp\t[qs]\d+|ld1r?\t)",
                "ldp": r"\tldp\t[qs]\d+",
                "stack": r"\[sp",
                "dest": r"\tfmla\t(v\d+)\.4s"},
}


def hot_loop(asm: str, arch: str) -> dict | None:
    """Counts for the hot loop of ``asm`` (one kernel's listing): of the innermost loops (the
    instructions between a label and a branch back to it) with vector FMAs, the one with the
    most accumulators, then the most FMAs. The full register tile runs there; a loop with
    fewer accumulators is a partial tile's (e.g. 196 pixels = 16 tiles of 12 and one of 4)."""
    pats = _PATTERNS[arch]
    best = None
    for match in _LABEL.finditer(asm):
        label = match.group(1)
        branch = re.compile(r"\t(?:j\w+|b\.\w+|b|cbn?z\t\w+,|tbn?z\t\w+,\s*#\d+,)\s*"
                            + re.escape(label) + r"\n")
        end = branch.search(asm, match.end())
        if end is None:
            continue
        body = asm[match.end():end.end()]
        if _LABEL.search(body):  # not innermost: another label inside
            continue
        fmas = len(re.findall(pats["fma"], body))
        accumulators = len(set(re.findall(pats["dest"], body)))
        if fmas == 0 or (best is not None and (accumulators, fmas) <=
                         (best["accumulators"], best["fmas"])):
            continue
        loads = len(re.findall(pats["load"], body))
        if arch == "aarch64":  # a load pair moves two registers through the load pipe
            loads += len(re.findall(pats["ldp"], body))
        else:
            loads += len(re.findall(pats["fma_in_mem"], body))  # FMA with a memory operand
        best = {"fmas": fmas, "loads": loads,
                "stack": len(re.findall(pats["stack"], body)),
                "instructions": len([line for line in body.splitlines()
                                     if line.startswith("\t") and not line.startswith("\t.")]),
                "accumulators": accumulators}
    return best


def bound(loop: dict, core: Core) -> dict:
    """Cycles per iteration by each limit, and the predicted share of the FMA peak."""
    cycles = {"fma": loop["fmas"] / core.fmas_per_cycle,
              "loads": loop["loads"] / core.loads_per_cycle,
              "issue": loop["instructions"] / core.issue_width,
              "latency": loop["fmas"] / max(loop["accumulators"], 1) * core.fma_latency}
    limit = max(cycles, key=cycles.get)
    return {"cycles": cycles, "limit": limit, "peak_share": cycles["fma"] / cycles[limit]}


def target_for(cpu: str):
    import tvm

    if CORES[cpu].arch == "aarch64":
        return tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": cpu,
                                  "mattr": ["+neon"]})
    return tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu})


def network_kernels() -> dict:
    """name -> PrimFunc: the conv kernels of LAS-ResNet-50 4-4-2-1 at 224x224, dense build
    (``dense/``) and LAS build at r = 0.5 (``las/``), as the compiler lowers them."""
    from .kernels import _lowered_kernels

    out = {}
    for build, rate in (("dense", None), ("las", 0.5)):
        net, x, _ = e2e.build("las_resnet50", e2e.SNET, rate)
        static = range(e2e.num_blocks(net)) if build == "dense" else ()
        for name, func in _lowered_kernels(net, x, static).items():
            kind = func.attrs.get("las.kernel") if func.attrs is not None else None
            if kind is not None and str(kind) in CONV_KERNELS:
                out[f"{build}/{name}"] = func
    return out


def analyse(cpus: Sequence[str], log=lambda m: None) -> list[dict]:
    import tvm

    from las_compiler.schedules import check_target, schedule

    kernels = network_kernels()
    rows = []
    for cpu in cpus:
        target, core = target_for(cpu), CORES[cpu]
        family = check_target(target)
        for name, func in kernels.items():
            symbol = name.replace("/", "_")
            scheduled = schedule(func, target).with_attr("global_symbol", symbol)
            lib = tvm.compile(tvm.IRModule({symbol: scheduled}), target=target,
                              tir_pipeline=family.tir_pipeline(target))
            loop = hot_loop(lib.mod.inspect_source("asm"), core.arch)
            row = {"cpu": cpu, "kernel": name, "kind": str(func.attrs["las.kernel"])}
            if loop is not None:
                row.update(loop, **bound(loop, core))
            rows.append(row)
        log(f"[inner_loops] {cpu}: {len(kernels)} kernels")
    return rows


def summarise(rows: list[dict]) -> str:
    lines = ["Per CPU, the hot loop of each conv kernel of LAS-ResNet-50 4-4-2-1 (dense and LAS "
             "builds, 224x224), one row per kernel family (the range over its kernels where "
             "they differ). FMAs, loads, spills: per loop iteration; accumulators: distinct "
             "FMA destination registers; predicted: the share of the FMA peak the loop allows "
             "(see the module docstring for the model and `CORES` for the figures).", ""]
    for cpu in dict.fromkeys(r["cpu"] for r in rows):
        core = CORES[cpu]
        lines += [f"### {cpu} ({core.vector_bits}-bit vectors, {core.registers} registers; "
                  f"FMA latency {core.fma_latency}, {core.fmas_per_cycle:g} FMA and "
                  f"{core.loads_per_cycle:g} loads a cycle, {core.issue_width}-wide issue)", "",
                  "| kernel family | kernels | FMAs | loads | FMAs per load | accumulators "
                  "| spills | bound by | predicted |", "|---|---|---|---|---|---|---|---|---|"]
        mine = [r for r in rows if r["cpu"] == cpu]
        for kind in dict.fromkeys(r["kind"] for r in mine):
            group = [r for r in mine if r["kind"] == kind and "fmas" in r]
            if not group:
                lines.append(f"| {kind} | {sum(r['kind'] == kind for r in mine)} | no FMA loop "
                             "found | | | | | | |")
                continue

            def span(key, fmt="d", rows=group):
                lo, hi = min(r[key] for r in rows), max(r[key] for r in rows)
                return format(lo, fmt) if lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"

            per_load = [r["fmas"] / max(r["loads"], 1) for r in group]
            limits = ", ".join(sorted({r["limit"] for r in group}))
            share = [r["peak_share"] for r in group]
            lines.append(f"| {kind} | {len(group)} | {span('fmas')} | {span('loads')} "
                         f"| {min(per_load):.1f}" + (f"-{max(per_load):.1f}" if
                                                     max(per_load) > min(per_load) + 0.05
                                                     else "")
                         + f" | {span('accumulators')} | {span('stack')} | {limits} "
                         f"| {min(share):.0%}" + (f"-{max(share):.0%}" if max(share) >
                                                   min(share) + 0.005 else "") + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inner_loops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", default=",".join(DEFAULT_CPUS),
                        help=f"comma-separated, from {','.join(CORES)}")
    parser.add_argument("--json", default="results/inner_loops.json")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    cpus = [c for c in args.cpus.split(",") if c]
    unknown = [c for c in cpus if c not in CORES]
    if unknown:
        parser.error(f"unknown CPU(s) {unknown}; from {', '.join(CORES)}")
    rows = analyse(cpus, lambda m: print(m, file=sys.stderr, flush=True))
    write_json_atomic(args.json, {"cores": {c: asdict(CORES[c]) for c in cpus}, "rows": rows})
    markdown = summarise(rows)
    print(markdown)
    if not args.no_readme:
        replace_section("inner_loops", "Inner loops per CPU (`python -m benchmarks.inner_loops`)",
                        markdown + f"\n\nJSON: `{args.json}`.", README)
    return 0


if __name__ == "__main__":
    from benchmarks.inner_loops import main as _main

    sys.exit(_main())
