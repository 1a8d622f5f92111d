"""Validate the latency predictor on this CPU, and show what it says about GPUs.

    python -m benchmarks.predictor --json results/predictor.json [--quick]

1. In a fresh 2-thread process: the host micro-benchmarks
   (``las_compiler.hardware_calibration``) and LAS blocks compiled by the compiler
   (``compile_block``: the ``fused`` pipeline, or those given with ``--pipelines``, plus each
   block static) for the first two ResNet-50 blocks of
   every stage x S in {1, 2, 4, 7, 8} that fits x r in {0.1, 0.25, 0.5, 0.75, 1.0}: medians
   and per-kernel profiles (Relax VM instrument).
2. Kernel efficiencies and overlap are fitted on the r in {0.25, 0.75} rows only
   (calibration); the other rates are held out. Reports MAPE and Spearman rank correlation of
   predicted vs measured block latency (held-out and all), and the S-selection regret: per
   block and r, the measured latency of the S the model picks over the measured best S.
3. The same model on the V100 (batch 128) and TX2 (batch 1) profiles: latency ratio to dense
   vs r per S and stage, compared with the paper's findings.

Writes JSON, ``results/predictor.png``, the calibrated profile ``results/host_profile.json``
and a section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from ._isolate import run_isolated, wait_for_idle
from ._readme import replace_section

GRANULARITIES = (1, 2, 4, 7, 8)
RATES = (0.1, 0.25, 0.5, 0.75, 1.0)
CALIBRATION_RATES = (0.25, 0.75)
QUICK = {"granularities": (1, 4, 7), "rates": (0.25, 0.5, 0.75), "repeats": 8}
GPU_SETTINGS = (("v100", 128), ("tx2", 1))  # (profile, batch)
README = Path(__file__).with_name("README.md")


def measure(granularities, rates, repeats: int, pipelines=("fused",)) -> dict:
    """(Child process) host micro-benchmarks and every block configuration."""
    from las_compiler.hardware_calibration import (
        calibration_configs,
        calibration_layers,
        measure_blocks,
        measure_host,
    )
    from las_compiler.predictor.profiles import nominal_host
    from las_compiler.target import host_target

    target = host_target()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    host = measure_host(nominal_host(), target, log)
    configs = calibration_configs(calibration_layers(), granularities, rates, pipelines)
    rows = measure_blocks(configs, target, repeats, log=log)
    return {"host": host.to_dict(), "rows": rows}


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x):
        x = np.asarray(x, float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):  # average tied ranks
            tied = x == value
            r[tied] = r[tied].mean()
        return r
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate(measured: dict, layers) -> dict:
    """Fit on the calibration rates, predict every row, and score."""
    from las_compiler.hardware_calibration import samples_from_rows
    from las_compiler.predictor import Hardware, predict_block
    from las_compiler.predictor.fit import fit_profile

    by_name = {layer.name: layer for layer in layers}
    host = Hardware.from_dict(measured["host"], "measured host")
    rows = measured["rows"]
    calib = [r for r in rows if r["S"] is None or r["r"] in CALIBRATION_RATES]
    fitted = fit_profile(host, samples_from_rows(calib, by_name))
    for row in rows:
        layer = by_name[row["block"]]
        pred = predict_block(fitted, layer, row["S"], row["r"], row["pipeline"],
                             active_cells=row["active_cells"] if row["S"] else None)
        row["predicted_ms"] = pred.total_ms
        row["predicted_kernels_ms"] = {k: t / 1e3 for k, t in pred.kernels}
        row["held_out"] = row["S"] is not None and row["r"] not in CALIBRATION_RATES

    def scores(subset):
        m = np.array([r["median_ms"] for r in subset])
        p = np.array([r["predicted_ms"] for r in subset])
        return {"n": len(subset), "mape": float(np.mean(np.abs(p - m) / m)),
                "spearman": spearman(p, m)}

    sparse = [r for r in rows if r["S"] is not None]
    regrets = []
    for block in by_name:
        for rate in sorted({r["r"] for r in sparse}):
            cands = [r for r in sparse if r["block"] == block and r["r"] == rate]
            if len(cands) < 2:
                continue
            picked = min(cands, key=lambda r: r["predicted_ms"])
            best = min(cands, key=lambda r: r["median_ms"])
            regrets.append({"block": block, "r": rate, "picked_S": picked["S"],
                            "best_S": best["S"],
                            "regret": picked["median_ms"] / best["median_ms"] - 1.0})
    return {"profile": fitted.to_dict(),
            "scores": {"held_out": scores([r for r in rows if r["held_out"]]),
                       "calibration": scores([r for r in rows if not r["held_out"]]),
                       "all": scores(rows)},
            "regret": {"mean": statistics.mean(x["regret"] for x in regrets),
                       "max": max(x["regret"] for x in regrets),
                       "cases": regrets},
            "rows": rows}


def gpu_study(rates=RATES) -> dict:
    """Predicted latency / dense per stage, S and r on the GPU profiles (ResNet-50 blocks
    layerN.1, the stride-1 blocks)."""
    from las_compiler.predictor import get_hardware, network_blocks, predict_block
    from las_compiler.predictor.block import best_pipeline
    from las_compiler.predictor.network import network_footprint_bytes

    out = {}
    for name, batch in GPU_SETTINGS:
        hw = get_hardware(name)
        table = {}
        layers = network_blocks("las_resnet50", batch=batch)
        footprint = network_footprint_bytes(layers)  # blocks inside the network
        for layer in layers:
            if not layer.name.endswith(".1"):
                continue
            dense = predict_block(hw, layer, None, 1.0, footprint_bytes=footprint).total_us
            table[layer.stage] = {
                s: {r: best_pipeline(hw, layer, s, r, footprint_bytes=footprint).total_us
                    / dense for r in rates}
                for s in (1, 2, 4, 7, 8) if layer.fits(s)}
        out[f"{name} (batch {batch})"] = table
    return out


def plot(result: dict, gpu: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"]]
    fig, axes = plt.subplots(1, 1 + len(gpu), figsize=(5 * (1 + len(gpu)), 4.2))
    ax = axes[0]
    for held, marker, label in ((False, "o", "calibration"), (True, "x", "held out")):
        sub = [r for r in rows if r["held_out"] == held]
        ax.scatter([r["median_ms"] for r in sub], [r["predicted_ms"] for r in sub],
                   marker=marker, s=14, label=label)
    top = max(max(r["median_ms"], r["predicted_ms"]) for r in rows) * 1.1
    ax.plot([0, top], [0, top], c="gray", lw=0.8)
    ax.set_xlabel("measured ms (host)")
    ax.set_ylabel("predicted ms")
    ax.set_title("predicted vs measured LAS blocks")
    ax.legend(fontsize=8)
    for ax, (setting, table) in zip(axes[1:], gpu.items(), strict=True):
        for stage, by_s in table.items():
            for s, by_r in by_s.items():
                if s in (1, 4, 7):
                    ax.plot(list(by_r), list(by_r.values()), marker=".",
                            ls=["-", "--", ":", "-."][stage - 1], label=f"stage {stage} S={s}")
        ax.axhline(1.0, c="k", lw=0.8)
        ax.set_title(f"{setting}: latency / dense (model)")
        ax.set_xlabel("activation rate r")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


PAPER_SWEET_SPOTS = {1: (4, 7, 8), 2: (4, 7), 3: (2, 7), 4: (1,)}


def summarise(result: dict, gpu: dict) -> str:
    sc, rg = result["scores"], result["regret"]
    prof = result["profile"]
    lines = ["### Host CPU: predicted vs measured", "",
             f"Calibrated on r in {CALIBRATION_RATES} (and the dense blocks); held out: the "
             "other rates.", "",
             "| set | configurations | MAPE | Spearman |", "|---|---|---|---|"]
    for key in ("held_out", "calibration", "all"):
        s = sc[key]
        lines.append(f"| {key} | {s['n']} | {100 * s['mape']:.1f} % | {s['spearman']:.3f} |")
    lines += ["", f"S-selection regret (measured latency of the predicted-best S / measured best "
              f"S - 1, over {len(rg['cases'])} (block, r)): mean {100 * rg['mean']:.1f} %, max "
              f"{100 * rg['max']:.1f} %.", "",
              "Goals: MAPE <= 8 % (held out: "
              f"{'met' if sc['held_out']['mape'] <= 0.08 else 'missed'}), Spearman >= 0.95 ("
              f"{'met' if sc['held_out']['spearman'] >= 0.95 else 'missed'}), regret <= 5 % ("
              f"{'met' if rg['mean'] <= 0.05 else 'missed'}, mean).", "",
              "Calibrated host: " + ", ".join(
                  f"{lv['name']} {lv['bandwidth_gbs']} GB/s" for lv in prof["levels"])
              + f"; micro-kernel peak {2 * prof['compute_units'] * prof['simd_lanes'] * prof['fma_per_cycle'] * prof['clock_ghz']:.0f} GFLOP/s; "  # noqa: E501
              f"dispatch {prof['launch_us']} us; overlap {prof['overlap']}; efficiencies "
              + ", ".join(f"{k} {v}" for k, v in sorted(prof["efficiency"].items())) + ".",
              "", "Worst held-out predictions:", "",
              "| block | S | r | measured ms | predicted ms | error |", "|---|---|---|---|---|---|"]
    held = sorted((r for r in result["rows"] if r["held_out"]),
                  key=lambda r: -abs(r["predicted_ms"] / r["median_ms"] - 1))
    for r in held[:6]:
        lines.append(f"| {r['block']} | {r['S']} | {r['r']} | {r['median_ms']:.3f} | "
                     f"{r['predicted_ms']:.3f} | {100 * (r['predicted_ms'] / r['median_ms'] - 1):+.0f} % |")  # noqa: E501
    lines += ["", "### GPU profiles (predicted with the CUDA rules' tiles; not measured on a "
              "GPU)", "",
              "Predicted latency / dense block at r = 0.5, stride-1 block of each stage "
              "(best pipeline per S):", "",
              "| profile | stage | " + " | ".join(f"S={s}" for s in GRANULARITIES)
              + " | best S | paper's sweet spots |",
              "|---|---|" + "---|" * len(GRANULARITIES) + "---|---|"]
    for setting, table in gpu.items():
        for stage, by_s in table.items():
            vals = {s: by_r[0.5] for s, by_r in by_s.items()}
            best = min(vals, key=vals.get)
            cells = " | ".join(f"{vals[s]:.2f}" if s in vals else "-" for s in GRANULARITIES)
            lines.append(f"| {setting} | {stage} | {cells} | {best} | "
                         f"{'/'.join(map(str, PAPER_SWEET_SPOTS[stage]))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.predictor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/predictor.json")
    parser.add_argument("--png", default="results/predictor.png")
    parser.add_argument("--profile", default="results/host_profile.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--measured", default=None,
                        help="reuse the measurements of an earlier --json output")
    parser.add_argument("--pipelines", default="fused",
                        help="comma-separated block pipelines to measure (e.g. fused,halo,dense)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    granularities, rates, repeats = GRANULARITIES, RATES, args.repeats
    pipelines = tuple(p.strip() for p in args.pipelines.split(",") if p.strip())
    if args.quick:
        granularities, rates = QUICK["granularities"], QUICK["rates"]
        repeats = min(repeats, QUICK["repeats"])
    if args.measured:
        measured = json.loads(Path(args.measured).read_text())["measured"]
    else:
        wait_for_idle()
        measured = run_isolated("benchmarks.predictor:measure",
                                {"granularities": granularities, "rates": rates,
                                 "repeats": repeats, "pipelines": pipelines}, timeout=7200)
    from las_compiler.hardware_calibration import calibration_layers
    from las_compiler.predictor import Hardware

    result = evaluate(measured, calibration_layers())
    gpu = gpu_study()
    plot(result, gpu, Path(args.png))
    Hardware.from_dict(result["profile"], "fitted").save(args.profile)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"measured": measured, "result": {
        k: v for k, v in result.items() if k != "rows"}, "rows": result["rows"],
        "gpu": {k: {str(st): {str(s): {str(r): v for r, v in by_r.items()}
                              for s, by_r in by_s.items()} for st, by_s in t.items()}
                for k, t in gpu.items()}, "quick": args.quick}, indent=1, default=str))
    tmp.replace(out)
    markdown = summarise(result, gpu)
    print(markdown)
    if not args.no_readme:
        command = "python -m benchmarks.predictor" + (" --quick" if args.quick else "")
        replace_section("predictor", f"Latency predictor (`{command}`)",
                        markdown + f"\n\nPlot: `{args.png}`.", README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
