"""Tuning: how fast each cost model finds the best knobs, and what the committed logs buy.

    python -m benchmarks.tuning --json results/tuning.json [--quick]

1. Search efficiency: for LAS kernels of LAS-ResNet-50 4-4-2-1 (at the representative patch
   counts ``las tune`` uses), tune each from an empty database with each cost model
   (``seeded``, stock ``xgb``, ``random``) and 3 seeds, to the size of its knob space. A run
   is scored by the knobs it chose, in order, against a reference table: every knob of the
   kernel timed in interleaved rounds after the runs (medians). Trials needed = the first
   trial whose knobs are within 5 % of the best knobs (goal: seeded <= 0.5x the trials of
   stock xgb). Scoring a run's own measurements instead lets a VM's speed changes decide it:
   one run measured in a fast minute sets a bar the others never reach.
2. Committed logs: LAS-ResNet-50 compiled with ``tuning_logs/<target>/`` vs with the untuned
   rules, whole network and per-kernel profile summed per stage, the two timed in alternating
   rounds in one process (ratio per stage).

Each part runs in its own 2-thread process. Writes JSON and a section of
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from ._isolate import run_isolated, wait_for_idle
from ._readme import replace_section

COST_MODELS = ("seeded", "xgb", "random")
SEEDS = (0, 1, 2)
KERNELS = 3
README = Path(__file__).with_name("README.md")
WITHIN = 0.05


def _model(rate: float = 0.5):
    import torch

    from las_compiler.models import build_model, calibrate

    model = build_model("las_resnet50", "4-4-2-1").eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    calibrate(model, rate, x)
    return model, x


def search_runs(count: int, seeds, cost_models, per_batch: int = 2, rounds: int = 5
                ) -> list[dict]:
    """(Child) every (kernel, cost model, seed) tuning run: the knobs it measured, in order,
    with its own latencies, and the kernel's reference table (``reference_ms``).

    Kernels: the ``count`` slowest kernels among those with the largest knob space (the
    dense convs: 12 combinations; sparse kernels have 3-6, where any model finds the best at
    once). Batches of ``per_batch`` candidates, so the order of measurement is the cost
    model's ranking."""
    from las_compiler.target import host_target
    from las_compiler.tuning.space import knob_space
    from las_compiler.tuning.tasks import extract_tasks, lowered_module
    from las_compiler.tuning.tune import tune_tasks, untuned_ms

    target = host_target()
    model, x = _model()
    tasks = extract_tasks(lowered_module(model, x, target), target, 0.5)
    largest = max(knob_space(t.mod["main"], target).size for t in tasks)
    cands = [t for t in tasks if knob_space(t.mod["main"], target).size == largest]
    picked = sorted(cands, key=lambda t: -untuned_ms(t, target, repeats=5))[:count]
    rows = []
    for task in picked:
        mine = []
        for cost_model in cost_models:
            for seed in seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    result = tune_tasks([task], target, tmp, 1 << 10, cost_model, seed=seed,
                                        per_batch=per_batch, measure_untuned=False,
                                        log=lambda _m: None)[0]
                mine.append({"task": task.name, "kind": task.kind, "cost_model": cost_model,
                             "seed": seed, "latencies_ms": result.history_ms,
                             "knobs": [_key(k) for k in result.history_knobs]})
                print(f"{task.name} {cost_model} seed {seed}: {len(result.history_ms)} trials",
                      file=sys.stderr, flush=True)
        reference = reference_table(task, target, rounds)
        rows += [{**row, "reference_ms": reference} for row in mine]
    return rows


def _key(knobs: dict) -> str:
    return f"{knobs['pixels']}{'/outer' if knobs.get('channel_outer') else ''}"


def reference_table(task, target, rounds: int) -> dict[str, float]:
    """Median milliseconds of every knob of ``task``, timed in ``rounds`` interleaved rounds
    (each knob compiled once), so slow and fast minutes fall on all knobs alike."""
    import numpy as np
    import tvm

    from las_compiler.schedules import device_of
    from las_compiler.tuning.space import knob_space, schedule_with_knobs
    from las_compiler.tuning.tune import _arguments

    func = task.mod["main"]
    space = knob_space(func, target)
    dev = device_of(target)
    info = [["TENSOR", str(p.dtype), [int(d) for d in p.shape]] for p in func.params]
    args = _arguments(dev, info, 1)[0]
    timers = {}
    for outer in space["channel_outer"].values:
        for pixels in space["pixels"].values:
            knobs = {"pixels": pixels, "channel_outer": outer}
            lib = tvm.compile(tvm.IRModule({"main": schedule_with_knobs(func, target, knobs)}),
                              target=target).jit()
            timers[_key(knobs)] = lib.time_evaluator("main", dev, number=3, repeat=3)
    times: dict[str, list[float]] = {key: [] for key in timers}
    for _ in range(rounds):
        for key, timer in timers.items():
            times[key].append(float(np.median(timer(*args).results)) * 1e3)
    return {key: float(np.median(values)) for key, values in times.items()}


def trials_to_best(rows: list[dict]) -> list[dict]:
    """Per run: trials until its knobs are within WITHIN of the task's best knobs (by the
    reference table)."""
    out = []
    for r in rows:
        reference = r["reference_ms"]
        goal = min(reference.values()) * (1 + WITHIN)
        needed = next((i + 1 for i, key in enumerate(r["knobs"]) if reference[key] <= goal),
                      None)
        out.append({**r, "trials_needed": needed, "space": len(reference)})
    return out


def stage_of(func) -> str:
    """Stage 1-4 of a kernel from its smallest feature map (56/28/14/7 at 224 input)."""
    import math

    sizes = []
    for param in func.params:
        shape = [int(d) for d in getattr(param, "shape", None) or () if hasattr(d, "value")]
        if len(shape) == 4:
            sizes.append(shape[1])
        elif len(shape) == 2 and math.isqrt(shape[0]) ** 2 == shape[0]:
            sizes.append(math.isqrt(shape[0]))
    stage = {56: "stage 1", 28: "stage 2", 14: "stage 3", 7: "stage 4"}
    rest = "stem, pool, classifier, VM builtins"
    return stage.get(min(sizes), rest) if sizes else rest


def stage_ratio(repeats: int, rounds: int = 8) -> dict:
    """(Child) LAS-ResNet-50 with the committed logs vs untuned rules: whole-network median
    and per-stage kernel milliseconds (VM profile), the two builds timed in alternating
    rounds, each round in the other order (medians over rounds)."""
    import statistics

    import tvm

    import las_compiler
    from las_compiler.target import host_target
    from las_compiler.tuning import default_log_dir
    from las_compiler.tuning.tasks import lowered_module

    target = host_target()
    log_dir = default_log_dir(target)
    if log_dir is None:
        raise RuntimeError("no committed tuning log for this target: run `las tune` first")
    model, x = _model()
    stages = {gvar.name_hint: stage_of(func)
              for gvar, func in lowered_module(model, x, target).functions_items()
              if isinstance(func, tvm.tirx.PrimFunc)}
    builds = {name: las_compiler.compile(model, x, "host", tuning_logs=logs)
              for name, logs in (("tuned", str(log_dir)), ("untuned", False))}
    totals = {name: [] for name in builds}
    per_stage = {name: {} for name in builds}
    for round_ in range(rounds):
        order = list(builds.items())
        for name, compiled in order if round_ % 2 == 0 else order[::-1]:
            totals[name].append(compiled.benchmark(x, repeat=repeats)["median_ms"])
            sums: dict[str, float] = {}
            for kernel, ms in compiled.profile(x, max(3, repeats // 4)).items():
                key = stages.get(kernel, "stem, pool, classifier, VM builtins")
                sums[key] = sums.get(key, 0.0) + ms
            for key, ms in sums.items():
                per_stage[name].setdefault(key, []).append(ms)
    out = {"log": str(log_dir), "rounds": rounds}
    for name, compiled in builds.items():
        out[f"{name}_ms"] = statistics.median(totals[name])
        out[f"{name}_schedules"] = compiled.metadata["schedules"]
        out[f"{name}_stage_ms"] = {k: statistics.median(v) for k, v in per_stage[name].items()}
    return out


def summarise(runs: list[dict], stages: dict | None) -> str:
    lines = ["### Search: trials until a run's knobs are within 5 % of the best knobs", "",
             "Knobs timed in 5 interleaved rounds after the runs (the reference table); a "
             "run is scored by the knobs it chose, in order.", "",
             "| kernel | space | best knobs (ms) | knobs within 5 % | "
             + " | ".join(COST_MODELS) + " |",
             "|---|---|---|---|" + "---|" * len(COST_MODELS)]
    needed = {m: [] for m in COST_MODELS}
    for task in dict.fromkeys(r["task"] for r in runs):
        cells = []
        for model in COST_MODELS:
            mine = [r for r in runs if r["task"] == task and r["cost_model"] == model]
            # a run that never came within 5 % counts as space + 1 trials
            needed[model] += [r["trials_needed"] or r["space"] + 1 for r in mine]
            cells.append("/".join(str(r["trials_needed"] or "never") for r in mine) or "-")
        space = max(r["space"] for r in runs if r["task"] == task)
        reference = next(r["reference_ms"] for r in runs if r["task"] == task)
        best = min(reference, key=reference.get)
        good = sum(t <= reference[best] * (1 + WITHIN) for t in reference.values())
        lines.append(f"| {task} | {space} | {best} ({reference[best]:.3f}) | {good} | "
                     + " | ".join(cells) + " |")
    mean = {m: statistics.mean(v) for m, v in needed.items() if v}
    lines += ["", "Mean trials over all runs (a run that never came within 5 % counts as the "
              "space size + 1): " + ", ".join(f"{m} {v:.2f}" for m, v in mean.items())]
    if "seeded" in mean and "xgb" in mean:
        ratio = mean["seeded"] / mean["xgb"]
        lines.append(f"seeded / xgb = {ratio:.2f} (goal <= 0.5: "
                     f"{'met' if ratio <= 0.5 else 'missed'})")
    if stages:
        lines += ["", "### LAS-ResNet-50 4-4-2-1 with the committed logs vs untuned rules", "",
                  f"Whole network (median): tuned {stages['tuned_ms']:.2f} ms, untuned "
                  f"{stages['untuned_ms']:.2f} ms, ratio "
                  f"{stages['tuned_ms'] / stages['untuned_ms']:.3f}. Schedules: "
                  f"{stages['tuned_schedules']}.", "",
                  "| stage | tuned ms | untuned ms | ratio |", "|---|---|---|---|"]
        for stage in sorted(stages["tuned_stage_ms"]):
            t, u = stages["tuned_stage_ms"][stage], stages["untuned_stage_ms"].get(stage)
            if u:
                lines.append(f"| {stage} | {t:.2f} | {u:.2f} | {t / u:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tuning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/tuning.json")
    parser.add_argument("--quick", action="store_true", help="2 kernels, 2 seeds")
    parser.add_argument("--skip-search", action="store_true",
                        help="reuse the search runs of an earlier --json output")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    count, seeds = (2, SEEDS[:2]) if args.quick else (KERNELS, SEEDS)
    previous = json.loads(Path(args.json).read_text()) if args.skip_search else None
    if previous is None:
        wait_for_idle()
        runs = trials_to_best(run_isolated("benchmarks.tuning:search_runs",
                                           {"count": count, "seeds": seeds,
                                            "cost_models": COST_MODELS}, timeout=7200))
    else:
        runs = previous["runs"]
    if previous is None or previous.get("stages") is None:
        wait_for_idle()
        try:
            stages = run_isolated("benchmarks.tuning:stage_ratio", {"repeats": args.repeats},
                                  timeout=1800)
        except RuntimeError as err:
            print(f"[tuning] committed-log comparison skipped: {err}", file=sys.stderr)
            stages = None
    else:
        stages = previous["stages"]
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"runs": runs, "stages": stages, "quick": args.quick}, indent=1))
    tmp.replace(out)
    markdown = summarise(runs, stages)
    print(markdown)
    if not args.no_readme:
        command = "python -m benchmarks.tuning" + (" --quick" if args.quick else "")
        replace_section("tuning", f"Tuning (`{command}`)", markdown, README)
    return 0


if __name__ == "__main__":
    sys.exit(main())
