"""LAS bottleneck blocks vs the best dense peers, on this CPU (2 threads, batch 1).

    python -m benchmarks.blocks --json results/blocks.json [--quick]

For the ResNet-50 bottleneck shapes of all 4 stages (first, strided block and a later one),
every S in {1, 2, 4, 7, 8} that fits and r in {0.1, 0.25, 0.5, 0.75, 1.0}, it measures every
block pipeline of ``las_compiler.block_pipelines`` that applies (``fused``, ``masker_conv1``,
``halo``, ``whole``, the ``unfused`` ablation, and ``dense``: dense kernels with the mask in
conv3's epilogue), each a one-block module compiled by ``las_compiler.compile_block`` exactly
as the compiler emits it inside a network (NHWC, the shortcut updated in place), and the dense
block in ONNX Runtime, OpenVINO, PyTorch eager and torch.compile (both channels_last) and
compiled by us (``dense_tvm``: the block static). Each framework runs in its own process
(``benchmarks._isolate``); medians over ``--repeats`` calls. Each rate is exact:
round(r * cells) random cells are pinned through the block's input
(``las_compiler.models.pin_mask``; the masker still runs and is timed). Rules as written (no
tuning log).

Writes JSON rows ``{stage, block, stride, S, r, variant, median_ms, gflops, ...}``, a Markdown
summary into ``benchmarks/README.md`` (between markers) and a PNG of the latency ratio
r_l = l_dynamic / l_dense against r, one line per S (the paper's Figure): measured here, and
beside it predicted by the latency model for a TX2, a GTX 1080 and a V100 (``--plot-only``
redraws it from the JSON). ``gflops`` of a
sparse row counts the useful multiply-accumulates (conv1 on the 3x3-dilated mask, conv2/conv3
on the mask, dense downsample) x 2 per second.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from las_compiler.block_pipelines import PIPELINES
from las_compiler.geometry import patch_grid

from ._isolate import ForeignLoad, quiet_timing, run_isolated, wait_for_idle
from ._readme import replace_section
from .peers import (
    BLOCK_SHAPES,
    as_shape,
    gflops,
    make_block,
    make_input,
    measure_peers,
    write_json_atomic,
)

GRANULARITIES = (1, 2, 4, 7, 8)
RATES = (0.1, 0.25, 0.5, 0.75, 1.0)
# every block pipeline (all selectable in las_compiler.compile); "the fused LAS block" is the
# best of those that compute only the active patches and fuse (neither ablation nor dense)
SPARSE_VARIANTS = tuple(PIPELINES)
FUSED_VARIANTS = tuple(p.name for p in PIPELINES.values() if not p.ablation and p.name != "dense")
PROFILE_RATE = 0.5
QUICK = {"shapes": ("s1b1", "s2b0", "s3b1"), "granularities": (2, 4, 7), "rates": (0.25, 0.5, 1.0),
         "repeats": 10}
README = Path(__file__).with_name("README.md")


def useful_macs(shape, granularity: int, active) -> float:
    """Multiply-accumulates a sparse block must do for this patch list (official counting)."""
    import torch

    from las_compiler.models.masker import dilate_mask, upsample_mask

    gh, gw = patch_grid(shape.out_height, shape.out_width, granularity)
    mask = torch.zeros(gh * gw)
    mask[torch.as_tensor(active, dtype=torch.long)] = 1
    up = upsample_mask(mask.reshape(1, gh, gw), shape.out_height, shape.out_width)
    rate = float(up.mean())
    dilated = float(dilate_mask(up, shape.stride, shape.height, shape.width).mean())
    in_px, out_px = shape.height * shape.width, shape.out_height * shape.out_width
    macs = shape.in_channels * shape.planes * in_px * dilated
    macs += (shape.planes * shape.planes * 9 + shape.planes * shape.out_channels) * out_px * rate
    if shape.downsample:
        macs += shape.in_channels * shape.out_channels * out_px
    return macs


def measure_tvm(shape: dict, granularities: Sequence[int], rates: Sequence[float],
                variants: Sequence[str], repeats: int, seed: int = 0,
                retries: int = 2) -> list[dict]:
    """(Child process) every TVM pipeline of one block shape; returns JSON rows. A timing
    that other processes disturbed is taken again up to ``retries`` times (waiting up to 15 s
    for a quiet machine before each)."""
    import numpy as np
    import torch

    from las_compiler.block_pipelines import get_pipeline
    from las_compiler.compiler import compile_block
    from las_compiler.hardware_calibration import kernel_times
    from las_compiler.models import pin_mask
    from las_compiler.target import host_target

    shape = as_shape(shape)
    target = host_target()
    block = make_block(shape, seed)
    x = make_input(shape, seed).relu()
    base = {"stage": shape.stage, "block": shape.name, "stride": shape.stride}
    rows = []

    def timed(compiled, image) -> dict:
        nhwc = image.permute(0, 2, 3, 1).contiguous().numpy()

        def measure():  # the module updates its input in place: benchmark() refreshes it
            with ForeignLoad() as load:
                res = compiled.benchmark(nhwc, repeat=repeats)
            return {"median_ms": res["median_ms"], "min_ms": res["min_ms"],
                    "runs": res["runs"], "foreign_cores": load.cores}

        # re-measured when other processes took the cores
        return quiet_timing(measure, retries=retries)

    dense = compile_block(block, x.permute(0, 2, 3, 1), target, static=True, tuning_logs=False)
    dense_row = timed(dense, x)
    rows.append({**base, "S": None, "r": 1.0, "variant": "dense_tvm", **dense_row,
                 "gflops": gflops(shape, dense_row["median_ms"])})
    rng = np.random.default_rng(seed)
    for s in (s for s in granularities if shape.fits(s)):
        block.granularity = s
        gh, gw = shape.grid(s)
        cells = gh * gw
        for variant in variants:
            if not get_pipeline(variant).applies(shape.geometry(s)):
                continue  # e.g. masker_conv1: the masker reads conv1's pixels only at S = 1
            template = pin_mask(block, x, torch.zeros(1, gh, gw))
            compiled = compile_block(block, template.permute(0, 2, 3, 1), target, variant,
                                     tuning_logs=False)
            for r in rates:
                active = np.sort(rng.choice(cells, int(round(r * cells)), replace=False))
                mask = torch.zeros(cells)
                mask[torch.as_tensor(active, dtype=torch.long)] = 1.0
                image = pin_mask(block, x, mask.reshape(1, gh, gw))
                t = timed(compiled, image)
                macs = useful_macs(shape, s, active)
                row = {**base, "S": s, "r": r, "variant": variant, **t,
                       "active_cells": len(active), "cells": cells,
                       "gflops": 2 * macs / (t["median_ms"] * 1e-3) / 1e9}
                if r == PROFILE_RATE:  # where the time goes, kernel by kernel
                    nhwc = image.permute(0, 2, 3, 1).contiguous().numpy()
                    row["profile"] = {**kernel_times(compiled.profile(nhwc, repeats)),
                                      "total": t["median_ms"]}
                rows.append(row)
    return rows


def best_dense(rows: list[dict]) -> dict[str, dict]:
    """Fastest dense row per block (over ONNX Runtime, PyTorch and our TVM rules)."""
    best = {}
    for row in rows:
        if row["variant"].startswith("dense_"):
            cur = best.get(row["block"])
            if cur is None or row["median_ms"] < cur["median_ms"]:
                best[row["block"]] = row
    return best


def summarise(rows: list[dict]) -> str:
    """Markdown: dense peers per block, then ratios to the best dense peer per S and r."""
    best = best_dense(rows)
    blocks = sorted({r["block"] for r in rows}, key=lambda b: (int(b[1]), int(b[3:])))
    lines = ["### Dense peers (ms, GFLOP/s)", "",
             "| block | stride | " + " | ".join(_dense_names(rows)) + " | best |",
             "|---|---|" + "---|" * (len(_dense_names(rows)) + 1)]
    for b in blocks:
        cells = []
        for name in _dense_names(rows):
            row = _find(rows, b, name)
            cells.append(f"{row['median_ms']:.2f} ({row['gflops']:.0f})" if row else "-")
        stride = next(r["stride"] for r in rows if r["block"] == b)
        lines.append(f"| {b} | {stride} | " + " | ".join(cells) + f" | {best[b]['variant']} |")
    lines += ["", "### Sparse pipelines: latency / best dense peer (lower is better)", "",
              "| block | S | variant | " + " | ".join(f"r={r}" for r in _rates(rows)) + " |",
              "|---|---|---|" + "---|" * len(_rates(rows))]
    for b in blocks:
        for s in sorted({r["S"] for r in rows if r["block"] == b and r["S"] is not None}):
            for variant in SPARSE_VARIANTS:
                ratios = []
                for rate in _rates(rows):
                    row = next((r for r in rows if r["block"] == b and r["S"] == s
                                and r["variant"] == variant and r["r"] == rate), None)
                    ratios.append(f"{row['median_ms'] / best[b]['median_ms']:.2f}" if row else "-")
                if any(v != "-" for v in ratios):
                    lines.append(f"| {b} | {s} | {variant} | " + " | ".join(ratios) + " |")
    lines += ["", *targets_report(rows), "", *profile_report(rows)]
    return "\n".join(lines)


def profile_report(rows: list[dict]) -> list[str]:
    """Per-kernel time of the fastest sparse configuration of each block at r = 0.5."""
    out = [f"### Where the time goes (fastest sparse pipeline per block, r={PROFILE_RATE})", "",
           "| block | S | variant | total ms | kernels (ms) |", "|---|---|---|---|---|"]
    for b in sorted({r["block"] for r in rows}, key=lambda b: (int(b[1]), int(b[3:]))):
        cands = [r for r in rows if r["block"] == b and r.get("profile")]
        if not cands:
            continue
        best = min(cands, key=lambda r: r["median_ms"])
        kernels = ", ".join(f"{k} {v:.3f}" for k, v in best["profile"].items() if k != "total")
        out.append(f"| {b} | {best['S']} | {best['variant']} | {best['profile']['total']:.3f} "
                   f"| {kernels} |")
    return out


def targets_report(rows: list[dict]) -> list[str]:
    """The kernel issue's targets, measured (best S per block, stages 1-3)."""
    best = best_dense(rows)
    out = ["### Against the targets", ""]

    def best_fused(block, rate, s=None):
        cands = [r for r in rows if r["block"] == block and r["r"] == rate
                 and r["variant"] in FUSED_VARIANTS and (s is None or r["S"] == s)]
        return min(cands, key=lambda r: r["median_ms"]) if cands else None

    # issue 23's goals: (stride-1 blocks, stride-2 first blocks) per rate
    for rate, goals in ((0.5, (0.55, 0.60)), (0.25, (0.35, 0.40)), (1.0, (1.10, 1.10))):
        for label, names, goal in (("stride-1 blocks", "b1", goals[0]),
                                   ("stride-2 first blocks", "b0", goals[1])):
            vals = {b: best_fused(b, rate) for b in best if b[1] in "123" and b.endswith(names)}
            vals = {b: v for b, v in vals.items() if v is not None}
            if not vals:
                continue
            ratio = {b: v["median_ms"] / best[b]["median_ms"] for b, v in vals.items()}
            text = ", ".join(f"{b} {ratio[b]:.2f} ({vals[b]['variant']} S={vals[b]['S']})"
                             for b in sorted(vals))
            ok = all(v <= goal for v in ratio.values())
            out.append(f"- r={rate}, {label}: best fused pipeline and S / best dense "
                       f"(goal <= {goal}): {text} -> {'met' if ok else 'missed'}")
    speedups = []
    for b in best:
        for s in {r["S"] for r in rows if r["block"] == b and r["S"] is not None}:
            f, u = best_fused(b, 0.5, s), _find(rows, b, "unfused", s, 0.5)
            if f and u and f.get("active_cells", 0) > 0:  # a 1-cell grid at r=0.5 has none
                speedups.append(u["median_ms"] / f["median_ms"])
    if speedups:
        out.append(f"- best fused pipeline vs unfused, same S, r=0.5 (goal >= 2.3x): median "
                   f"{statistics.median(speedups):.2f}x, range {min(speedups):.2f}-"
                   f"{max(speedups):.2f}x over {len(speedups)} (block, S)")
    masker_fusion = [(_find(rows, b, "fused", 1, rate), _find(rows, b, "masker_conv1", 1, rate))
                     for b in best for rate in _rates(rows)]
    masker_fusion = [f["median_ms"] / m["median_ms"] for f, m in masker_fusion if f and m]
    if masker_fusion:
        out.append(f"- S=1 masker fused into conv1 vs separate masker + dilated conv1 "
                   f"(> 1: fusion faster): median {statistics.median(masker_fusion):.2f}x, "
                   f"range {min(masker_fusion):.2f}-{max(masker_fusion):.2f}x over "
                   f"{len(masker_fusion)} (block, r)")
    ort = {r["block"]: r for r in rows if r["variant"] == "dense_onnxruntime"}
    ours = {r["block"]: r for r in rows if r["variant"] == "dense_tvm"}
    common = sorted(set(ort) & set(ours))
    if common:
        ratios = [ours[b]["gflops"] / ort[b]["gflops"] for b in common]
        out.append("- dense TVM (our rules) GFLOP/s / ONNX Runtime (goal >= 1.0): "
                   + ", ".join(f"{b} {v:.2f}" for b, v in zip(common, ratios, strict=True)))
    return out


PLOT_DEVICES = ("tx2", "gtx1080", "v100")  # predicted columns beside the measured one


def measured_curves(rows: list[dict], block: str) -> dict[int, list[tuple[float, float]]]:
    """S -> [(r, l_dynamic / l_best_dense)] of one block as measured here (the best fused
    pipeline at each S and r)."""
    best = best_dense(rows)[block]["median_ms"]
    curves = {}
    for s in sorted({r["S"] for r in rows if r["block"] == block and r["S"] is not None}):
        fastest: dict[float, float] = {}
        for r in rows:
            if r["block"] == block and r["S"] == s and r["variant"] in FUSED_VARIANTS:
                fastest[r["r"]] = min(fastest.get(r["r"], math.inf), r["median_ms"])
        curves[s] = sorted((rate, ms / best) for rate, ms in fastest.items())
    return curves


def predicted_curves(device: str, block: str, granularities, rates
                     ) -> dict[int, list[tuple[float, float]]]:
    """S -> [(r, predicted l_dynamic / l_dense)] of one ResNet-50 block on ``device`` (the
    predictor's best pipeline at each S and r)."""
    from las_compiler.predictor import get_hardware
    from las_compiler.predictor.block import best_pipeline, predict_block
    from las_compiler.predictor.layers import network_blocks

    shape = as_shape(block)
    layer = next(b for b in network_blocks("las_resnet50")
                 if b.name == f"layer{shape.stage}.{shape.name.rpartition('b')[2]}")
    hw = get_hardware(device)
    dense = predict_block(hw, layer, None, 1.0, "static").total_us
    return {s: [(rate, best_pipeline(hw, layer, s, rate).total_us / dense) for rate in rates]
            for s in granularities if layer.fits(s)}


def plot(rows: list[dict], path: Path, devices: Sequence[str] = PLOT_DEVICES) -> None:
    """r_l = l_dynamic / l_dense against r, one line per S: one row of panels per block, the
    first measured on this CPU (against the best dense peer), the others predicted per device
    by the latency model (the paper's Figure, per device)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = sorted({r["block"] for r in rows if r["S"] is not None},
                    key=lambda b: (int(b[1]), int(b[3:])))
    columns = ["measured (this CPU)", *(f"predicted: {d}" for d in devices)]
    fig, axes = plt.subplots(len(blocks), len(columns), figsize=(3.6 * len(columns),
                             3.0 * len(blocks)), squeeze=False)
    for row_axes, b in zip(axes, blocks, strict=True):
        measured = measured_curves(rows, b)
        rates = sorted({rate for pts in measured.values() for rate, _ in pts})
        curves = [measured, *(predicted_curves(d, b, list(measured), rates) for d in devices)]
        for ax, column, by_s in zip(row_axes, columns, curves, strict=True):
            for s, pts in by_s.items():
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"S={s}")
            ax.plot([0, 1], [0, 1], ls=":", c="gray", lw=1)
            ax.axhline(1.0, c="k", lw=0.8)
            stride = next(r["stride"] for r in rows if r["block"] == b)
            ax.set_title(f"{b} (stride {stride}): {column}", fontsize=8)
            ax.set_xlabel("activation rate r")
            ax.set_ylabel("latency / dense")
            ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_readme_section(markdown: str, command: str) -> None:
    replace_section("blocks", f"Blocks (`{command}`)", markdown, README)


def _dense_names(rows):
    return sorted({r["variant"] for r in rows if r["variant"].startswith("dense_")})


def _rates(rows):
    return sorted({r["r"] for r in rows if r["S"] is not None})


def _find(rows, block, variant, s=None, rate=None):
    return next((r for r in rows if r["block"] == block and r["variant"] == variant
                 and (s is None or r["S"] == s) and (rate is None or r["r"] == rate)), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blocks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/blocks.json")
    parser.add_argument("--png", default="results/blocks.png")
    parser.add_argument("--quick", action="store_true", help="3 blocks, S 2/4/7, r .25/.5/1")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="peer rounds (median of medians)")
    parser.add_argument("--no-readme", action="store_true", help="do not update the README")
    parser.add_argument("--plot-only", action="store_true",
                        help="measure nothing: redraw --png from the rows in --json")
    args = parser.parse_args(argv)
    if args.plot_only:
        import json

        plot(json.loads(Path(args.json).read_text())["rows"], Path(args.png))
        print(f"wrote {args.png}")
        return 0
    shapes = [s.name for s in BLOCK_SHAPES]
    granularities, rates, repeats = GRANULARITIES, RATES, args.repeats
    if args.quick:
        shapes, granularities, rates = QUICK["shapes"], QUICK["granularities"], QUICK["rates"]
        repeats = min(repeats, QUICK["repeats"])

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    rows = [{"S": None, "r": 1.0, **row}  # dense peers: every pixel computed
            for row in measure_peers(shapes, repeats=repeats,
                                     rounds=1 if args.quick else args.rounds, log=log)]
    failures = {}
    for name in shapes:
        wait_for_idle()
        log(f"[blocks] TVM pipelines for {name}")
        try:
            rows += run_isolated("benchmarks.blocks:measure_tvm",
                                 {"shape": name, "granularities": granularities, "rates": rates,
                                  "variants": SPARSE_VARIANTS, "repeats": repeats}, timeout=1800)
        except Exception as err:  # noqa: BLE001 - one broken shape must not lose the others
            failures[name] = f"{type(err).__name__}: {str(err).splitlines()[-1][:300]}"
            log(f"[blocks] {name} FAILED: {failures[name]}")
    write_json_atomic(args.json, {"rows": rows, "quick": args.quick, "repeats": repeats,
                                  "failures": failures})
    plot(rows, Path(args.png))
    markdown = summarise(rows)
    if failures:
        markdown += "\n\nFailed shapes: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
    print(markdown)
    if not args.no_readme:
        command = "python -m benchmarks.blocks" + (" --quick" if args.quick else "")
        write_readme_section(markdown + f"\n\nPlot: `{args.png}`.", command)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
