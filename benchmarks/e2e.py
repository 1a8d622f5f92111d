"""End to end: compiled LAS-ResNets against dense peers, on this CPU (2 threads, batch 1).

    python -m benchmarks.e2e --json results/e2e.json [--quick] [--no-readme]

Models: LAS-ResNet-50 and LAS-ResNet-101 with S_net "4-4-2-1", 224x224, random weights
(``torch.manual_seed``), maskers calibrated with :func:`las_compiler.models.calibrate` on a fixed
random batch of 2 images to an activation rate r in {0.3, 0.5, 0.7}; the timed input is the
first image of that batch. Systems, each in its own process (``benchmarks._isolate``):

* ``las``: ``las_compiler.compile(model, x, "host")``, one compile per (model, r). Also reports
  the actual activation rate of the compiled model's masks on ``x`` and the share of the
  instrumented kernel time spent on masks and active-patch indices (Relax VM instrument).
* ``tvm_dense``: the same compiler with every block static (dense), one per architecture.
* ``onnxruntime``: the dense network exported with the dynamo exporter (opset 18), output
  checked against PyTorch.
* ``openvino``: the same ONNX file in OpenVINO's CPU plugin (f32, 2 inference threads, the
  LATENCY hint: :func:`las_compiler.dense_peers.openvino_model`), output checked likewise.
* ``torch_eager`` (channels_last, inference mode) and ``torch_compile`` (``torch.compile``,
  default mode, channels_last, warmed up before timing) of the same dense network.

Medians over ``--repeats`` calls (TVM: ``CompiledModel.benchmark``, i.e. the VM's time
evaluator; others: :func:`benchmarks._isolate.timed_runs`); ``--rounds`` full rounds (default
2), each row reporting its fastest round (all rounds' medians are in the JSON): this VM's
neighbours slow whole minutes down, seen by no process here. A measurement during which other
processes used more than 0.25 cores is repeated (up to twice, same process) and flagged if it
never was quiet. ``--quick``: LAS-ResNet-50 only, r=0.5, every system, 10 repeats.

Ratios are to the **best dense peer** of the same model and batch (the fastest of ONNX Runtime,
OpenVINO, torch eager and torch.compile in this run; which one wins depends on the CPU), and to
ONNX Runtime. ``--batch 4`` measures batch 4 (every system, same models). Writes JSON rows
and a Markdown section into ``benchmarks/README.md`` (between ``<!-- e2e:begin -->`` and
``<!-- e2e:end -->``) unless ``--no-readme``.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ._isolate import (
    MAX_FOREIGN_CORES,
    REPO_ROOT,
    ForeignLoad,
    quiet_timing,
    run_isolated,
    timed_runs,
    wait_for_idle,
)
from ._readme import replace_section
from .peers import (
    PeerMismatchError,
    run_metadata,
    write_json_atomic,
)

MODULE = "benchmarks.e2e"  # not __name__: that is "__main__" under `python -m`
ARCHITECTURES = {"las_resnet50": "LAS-ResNet-50", "las_resnet101": "LAS-ResNet-101"}
SNET = "4-4-2-1"
RATES = (0.3, 0.5, 0.7)
SYSTEMS = ("onnxruntime", "openvino", "torch_eager", "torch_compile", "tvm_dense", "las")
DENSE_SYSTEMS = ("onnxruntime", "openvino", "torch_eager", "torch_compile", "tvm_dense")
DENSE_PEERS = ("onnxruntime", "openvino", "torch_eager", "torch_compile")  # not ours
COMPILED_SYSTEMS = ("las", "tvm_dense")
QUICK = {"models": ("las_resnet50",), "rates": (0.5,),
         "systems": SYSTEMS, "repeats": 10}
IMAGE_SIZE = 224
CALIBRATION_IMAGES = 2
SEED = 0
PROFILE_RUNS = 5  # instrumented forward passes for the mask share (after one warm-up)
SETTLE_S = 0.2
OUTPUT_RTOL = 1e-3  # peers vs torch: max |diff| / max |output| (deep float32 network)
TIMEOUT_S = 2400.0
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- e2e:begin -->", "<!-- e2e:end -->"

# Kernels that handle masks and active-patch indices (VM instrument names; fnmatch patterns):
# the masker, compaction to active cell ids + count, the count's conversion to a symbolic shape
# (a cast kernel before it until the scans wrote int64 counts), the idx[:n] prefix, and the
# reshape+cast of the int32 flags to the bool mask outputs.
MASK_KERNELS = ("masker*", "compact*", "active_prefix*", "active_rows*", "dilated_rows*",
                "pixel_rows*",
                "fused_cast*", "fused_reshape*_cast*",
                "vm.builtin.tensor_to_shape", "vm.builtin.match_shape")
# Runtime work that is neither a kernel of the network nor mask handling (reported apart).
RUNTIME_KERNELS = ("vm.builtin.*", "shape_func*")
# issue 23's goals, against the best dense peer; the compile and mask-share goals of earlier ones
GOALS = {"las_ratio": {"las_resnet50": 0.60, "las_resnet101": 0.55}, "dense_ratio": 1.00,
         "compile_s": 60.0, "mask_share": 0.03}


# -- what one run measures ----------------------------------------------------------------------


def plan(quick: bool = False, models: Sequence[str] | None = None,
         rates: Sequence[float] | None = None,
         systems: Sequence[str] | None = None, batch: int = 1) -> list[dict]:
    """The measurements of a run, in order: ``{"model", "snet", "rate", "system", "batch"}``.

    Dense systems (rate None) come first per architecture, then ``las`` per rate; defaults are
    the full run or, with ``quick``, :data:`QUICK`.
    """
    models = tuple(models or (QUICK["models"] if quick else ARCHITECTURES))
    rates = tuple(rates or (QUICK["rates"] if quick else RATES))
    systems = tuple(systems or (QUICK["systems"] if quick else SYSTEMS))
    unknown = [m for m in models if m not in ARCHITECTURES] + \
        [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown model(s)/system(s) {unknown}; models: "
                         f"{', '.join(ARCHITECTURES)}; systems: {', '.join(SYSTEMS)}")
    bad = [r for r in rates if not 0.0 <= r <= 1.0]
    if bad:
        raise ValueError(f"activation rates must lie in [0, 1], got {bad}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    configs = []
    for model in models:
        base = {"model": model, "snet": SNET, "batch": batch}
        configs += [{**base, "rate": None, "system": s} for s in SYSTEMS
                    if s in systems and s in DENSE_SYSTEMS]
        if "las" in systems:
            configs += [{**base, "rate": r, "system": "las"} for r in rates]
    return configs


# -- the models (child processes only: these import torch) --------------------------------------


def build(model: str, snet: str = SNET, rate: float | None = None, seed: int = SEED,
          height: int = IMAGE_SIZE, width: int = IMAGE_SIZE, backbone: bool = False,
          batch: int = 1):
    """``(net, x, reached)``: the eval-mode LAS-ResNet (``backbone``: its C2-C5 detection
    backbone) with seeded random weights, the timed input (batch, 3, height, width) and, if
    ``rate`` is given, the per-block rates that calibration reached on the calibration batch
    (else None). The calibration batch is the first images of the same seeded draw, whatever
    the batch."""
    import torch

    from las_compiler.models import build_model, calibrate

    torch.manual_seed(seed)
    options = {"out_stages": (1, 2, 3, 4)} if backbone else {}
    net = build_model(model, snet, **options).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(max(CALIBRATION_IMAGES, batch), 3, height, width, generator=gen)
    reached = None if rate is None else calibrate(net, rate, images[:CALIBRATION_IMAGES])
    return net, images[:batch].clone(), reached


def num_blocks(net) -> int:
    return len(list(net.dynamic_blocks()))


def as_arrays(out) -> list:
    """A network's output(s) as a list of numpy arrays (logits, or a backbone's maps)."""
    outputs = out if isinstance(out, tuple | list) else [out]
    return [o.numpy() if hasattr(o, "numpy") else o for o in outputs]


def relative_error(out, ref) -> float:
    """max |out - ref| / max |ref| over every output (NaN-safe: NaN stays NaN)."""
    import numpy as np

    def flat(value):
        return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in
                               as_arrays(value)])

    if len(as_arrays(out)) != len(as_arrays(ref)):
        raise PeerMismatchError(f"{len(as_arrays(out))} outputs != reference's "
                                f"{len(as_arrays(ref))}")
    shapes = [np.shape(a) for a in as_arrays(out)], [np.shape(a) for a in as_arrays(ref)]
    if shapes[0] != shapes[1]:
        raise PeerMismatchError(f"output shapes {shapes[0]} != reference {shapes[1]}")
    out, ref = flat(out), flat(ref)
    if out.shape != ref.shape:
        raise PeerMismatchError(f"output shape {out.shape} != reference {ref.shape}")
    return float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))


def _tvm_timing(cm, x, repeats: int) -> dict:
    def measure():
        with ForeignLoad() as load:
            res = cm.benchmark(x, repeat=repeats)
        return {"median_ms": res["median_ms"], "min_ms": res["min_ms"], "runs": res["runs"],
                "foreign_cores": load.cores}

    return quiet_timing(measure)


def kernel_kind(name: str) -> str:
    """``"mask"`` (mask and index handling), ``"runtime"`` (VM builtins, shape functions) or
    ``"kernel"`` (the network's own compute)."""
    if any(fnmatch.fnmatchcase(name, p) for p in MASK_KERNELS):
        return "mask"
    if any(fnmatch.fnmatchcase(name, p) for p in RUNTIME_KERNELS):
        return "runtime"
    return "kernel"


def time_shares(seconds: dict[str, float]) -> dict[str, float]:
    """Fraction of the instrumented time per :func:`kernel_kind` (0 for an empty profile)."""
    total = sum(seconds.values())
    shares = dict.fromkeys(("mask", "runtime", "kernel"), 0.0)
    for name, s in seconds.items():
        shares[kernel_kind(name)] += s / total if total > 0 else 0.0
    return shares


def profile_kernels(cm, x, runs: int = PROFILE_RUNS) -> dict:
    """Per-kind shares of ``runs`` instrumented passes (``CompiledModel.profile``), the mask
    kernels' and the slowest kernels' ms per pass."""
    per_pass = cm.profile(x, runs)
    shares = time_shares(per_pass)
    top = sorted(per_pass.items(), key=lambda kv: -kv[1])
    return {
        "mask_share": shares["mask"],
        "runtime_share": shares["runtime"],
        "instrumented_ms": sum(per_pass.values()),
        "mask_kernels_ms": {k: round(v, 4) for k, v in top if kernel_kind(k) == "mask"},
        "top_kernels_ms": {k: round(v, 4) for k, v in top[:15]},
    }


def measure(system: str, model: str, snet: str = SNET, rate: float | None = None,
            repeats: int = 20, seed: int = SEED, height: int = IMAGE_SIZE,
            width: int = IMAGE_SIZE, backbone: bool = False, batch: int = 1) -> dict:
    """(Child process) one system on one configuration; returns the row's measured fields."""
    import numpy as np
    import torch

    from las_compiler.dense_peers import dense_network, onnx_session, openvino_model

    torch.set_num_threads(2)  # the threads run_isolated pinned; torch's own pool too
    net, x, reached = build(model, snet, rate, seed, height, width, backbone, batch)
    with torch.inference_mode():
        ref = as_arrays(net(x) if system == "las" else dense_network(net)(x))
    if system in COMPILED_SYSTEMS:
        import las_compiler

        static = range(num_blocks(net)) if system == "tvm_dense" else ()
        meta = {} if rate is None else {"calibration_rate": rate}
        cm = las_compiler.compile(net, x, "host", static_blocks=static, metadata=meta)
        out, masks = cm.run_with_masks(x)
        row = {"compile_seconds": cm.metadata["compile_seconds"],
               "max_rel_err": relative_error(out, ref)}
        if system == "las":
            rates = [float(np.mean(m)) for m in masks]
            row.update(actual_rate=float(np.mean(rates)), block_rates=rates,
                       calibrated_rates=reached)
        time.sleep(SETTLE_S)
        row.update(_tvm_timing(cm, x, repeats))
        if system == "las":
            row.update(profile_kernels(cm, x))
        return row
    dense = dense_network(net)
    if system in ("onnxruntime", "openvino"):
        array = np.ascontiguousarray(x.numpy())
        if system == "onnxruntime":
            session = onnx_session(dense, x)
            feed = {session.get_inputs()[0].name: array}
            infer = lambda: session.run(None, feed)  # noqa: E731
        else:
            run_openvino = openvino_model(dense, x)
            infer = lambda: run_openvino(array)  # noqa: E731
        err = relative_error(infer(), ref)
        if not err <= OUTPUT_RTOL:  # also catches NaN
            raise PeerMismatchError(f"{model}: {system} output differs from torch: max "
                                    f"|diff| / max |output| = {err:.3g} > {OUTPUT_RTOL:g}")
        time.sleep(SETTLE_S)
        return {"max_rel_err": err, **quiet_timing(lambda: timed_runs(infer, repeats))}
    if system in ("torch_eager", "torch_compile"):
        dense = dense.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        row = {"layout": "channels_last"}
        with torch.inference_mode():
            if system == "torch_compile":
                start = time.perf_counter()
                dense = torch.compile(dense)
                out = dense(xc)  # compiles
                for _ in range(2):
                    out = dense(xc)
                row["compile_seconds"] = round(time.perf_counter() - start, 2)
            else:
                out = dense(xc)
            row["max_rel_err"] = relative_error(out, ref)
            time.sleep(SETTLE_S)
            row.update(quiet_timing(lambda: timed_runs(lambda: dense(xc), repeats)))
        return row
    raise ValueError(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")


# -- the run ------------------------------------------------------------------------------------


def error_text(err: BaseException) -> str:
    """``Type: last non-empty line of the message`` (at most 300 characters)."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1][:300] if lines else ''}".rstrip(": ")


def _case(row: dict) -> tuple:
    return row["model"], row.get("batch", 1)


def add_ratios(rows: list[dict]) -> list[dict]:
    """Set on every row, against the dense rows of the same model and batch:
    ``ratio_vs_onnxruntime`` (its median / ORT's), ``best_peer`` (the fastest of
    :data:`DENSE_PEERS`) and ``ratio_vs_best_peer``; None where a median is missing."""
    ort, best = {}, {}
    for r in rows:
        if r.get("median_ms") is None:
            continue
        if r["system"] == "onnxruntime":
            ort[_case(r)] = r["median_ms"]
        if r["system"] in DENSE_PEERS and (_case(r) not in best or
                                           r["median_ms"] < best[_case(r)][1]):
            best[_case(r)] = (r["system"], r["median_ms"])
    for row in rows:
        ms = row.get("median_ms")
        base = ort.get(_case(row))
        peer, peer_ms = best.get(_case(row), (None, None))
        row["ratio_vs_onnxruntime"] = ms / base if ms and base else None
        row["best_peer"] = peer
        row["ratio_vs_best_peer"] = ms / peer_ms if ms and peer_ms else None
    return rows


def best_of_rounds(rounds: Sequence[list[dict]]) -> list[dict]:
    """One row per configuration out of several full rounds: the round with the lowest median
    (a VM's neighbours slow whole minutes down, so the fastest round is the closest to the
    machine's own speed; every system gets the same treatment), with every round's median in
    ``round_medians_ms``. Ratios are recomputed; ``round_ratios_vs_best_peer`` has each
    round's own ratio (the row's median / that round's best peer), so a claim can be checked
    against every round, not only the fastest ones."""
    per_round = [add_ratios([dict(r) for r in rows]) for rows in rounds]
    merged = []
    for candidates in zip(*per_round, strict=True):
        timed = [r for r in candidates if r.get("median_ms") is not None]
        best = min(timed, key=lambda r: r["median_ms"]) if timed else candidates[0]
        merged.append({**best, "round_medians_ms": [r.get("median_ms") for r in candidates],
                       "round_ratios_vs_best_peer": [r.get("ratio_vs_best_peer")
                                                     for r in candidates]})
    return add_ratios(merged)


def ratio_range(row: dict) -> str:
    """``" (0.81-0.97)"``: the row's ratio to the best peer in each round, when they differ."""
    ratios = [r for r in row.get("round_ratios_vs_best_peer") or () if r is not None]
    if len(ratios) < 2 or max(ratios) - min(ratios) < 0.005:
        return ""
    return f" ({min(ratios):.2f}-{max(ratios):.2f})"


def run(configs: Iterable[dict], repeats: int, log: Callable[[str], None] = lambda m: None,
        runner: Callable[..., Any] = run_isolated, timeout: float = TIMEOUT_S) -> list[dict]:
    """Measure every configuration in its own process; a failure becomes the row's ``error``."""
    rows = []
    for config in configs:
        where = f"{config['model']} {config['system']}" + \
            (f" batch {config['batch']}" if config.get("batch", 1) != 1 else "") + \
            (f" r={config['rate']}" if config["rate"] is not None else "")
        before = wait_for_idle(MAX_FOREIGN_CORES, timeout=15.0)
        if before is not None and before > MAX_FOREIGN_CORES:
            log(f"[e2e] {where}: machine busy ({before:.2f} other cores), measuring anyway")
        start = time.perf_counter()
        row = {**config, "median_ms": None}
        try:
            row.update(runner(f"{MODULE}:measure", {**config, "repeats": repeats},
                              timeout=timeout))
            log(f"[e2e] {where}: {row['median_ms']:.2f} ms"
                + (" (contended)" if row.get("contended") else "")
                + (f", compiled in {row['compile_seconds']:.1f} s"
                   if row.get("compile_seconds") is not None else "")
                + (f", mask share {row['mask_share']:.1%}" if "mask_share" in row else ""))
        except Exception as err:  # noqa: BLE001 - one broken configuration must not stop the run
            row["error"] = error_text(err)
            log(f"[e2e] {where} FAILED: {row['error']}")
        row["wall_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    return add_ratios(rows)


# -- reporting ----------------------------------------------------------------------------------


def _fmt(value, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, spec)


def table(rows: list[dict], case: tuple) -> list[str]:
    """Markdown lines: one table for one (architecture, batch)."""
    mine = [r for r in rows if _case(r) == case]
    if not mine:
        return []
    model, batch = case
    order = {s: i for i, s in enumerate(SYSTEMS)}
    mine.sort(key=lambda r: (order.get(r["system"], 99), r["rate"] if r["rate"] is not None
                             else -1))
    best = next((r["best_peer"] for r in mine if r.get("best_peer")), None)
    out = [f"### {ARCHITECTURES.get(model, model)} (S_net {mine[0]['snet']}), batch {batch}, "
           f"{IMAGE_SIZE}x{IMAGE_SIZE}", "",
           f"Best dense peer: {best or 'none measured'}.", "",
           "| system | r (target) | r (actual) | median ms | vs best dense peer (each round) "
           "| vs ORT dense "
           "| compile s | mask share |", "|---|---|---|---|---|---|---|---|"]
    for r in mine:
        if r.get("error"):
            ms = f"failed: {r['error'][:120]}".replace("|", "/")
        else:
            ms = _fmt(r.get("median_ms"), ".2f") + ("*" if r.get("contended") else "")
        out.append(f"| {r['system']} | {_fmt(r['rate'], 'g', 'dense')} "
                   f"| {_fmt(r.get('actual_rate'), '.3f')} | {ms} "
                   f"| {_fmt(r.get('ratio_vs_best_peer'), '.2f')}{ratio_range(r)} "
                   f"| {_fmt(r.get('ratio_vs_onnxruntime'), '.2f')} "
                   f"| {_fmt(r.get('compile_seconds'), '.1f')} "
                   f"| {_fmt(r.get('mask_share'), '.1%')} |")
    return out


def _verdict(value, goal: float, spec: str, unit: str = "") -> str:
    if value is None:
        return "not measured"
    return f"{format(value, spec)}{unit} -> {'met' if value <= goal else 'missed'}"


def _rounds_note(row: dict, goal: float) -> str:
    """``"; every round met"`` / ``"; rounds: 0.80, 1.19"`` when the rounds disagree."""
    ratios = [r for r in row.get("round_ratios_vs_best_peer") or () if r is not None]
    if len(ratios) < 2:
        return ""
    if all(r <= goal for r in ratios) or all(r > goal for r in ratios):
        return f"; every round {'met' if ratios[0] <= goal else 'missed'}"
    return "; rounds disagree: " + ", ".join(f"{r:.2f}" for r in ratios)


def goals(rows: list[dict]) -> list[str]:
    """The end-to-end goals, each marked met / missed with the measured value."""
    ok = [r for r in rows if not r.get("error") and r.get("median_ms") is not None]
    compiled = [r for r in ok if r["system"] in COMPILED_SYSTEMS
                and r.get("compile_seconds") is not None]
    slowest = max(compiled, key=lambda r: r["compile_seconds"], default=None)
    shares = [r for r in ok if r.get("mask_share") is not None]
    worst = max(shares, key=lambda r: r["mask_share"], default=None)

    def where(r):
        rate = f" r={r['rate']:g}" if r["rate"] is not None else ""
        return f"{r['model']} {r['system']}{rate}"

    g = GOALS
    lines = ["### Goals (against the best dense peer of the same model and batch)", ""]
    for case in dict.fromkeys(_case(r) for r in ok):
        model, batch = case
        name = f"{ARCHITECTURES.get(model, model)}, batch {batch}"
        las = [r for r in ok if _case(r) == case and r["system"] == "las"
               and r["rate"] is not None and abs(r["rate"] - 0.5) < 0.051]
        las = min(las, key=lambda r: abs(r["rate"] - 0.5), default=None)
        dense = next((r for r in ok if _case(r) == case and r["system"] == "tvm_dense"), None)
        peer = next((r["best_peer"] for r in ok if _case(r) == case and r.get("best_peer")),
                    "none")
        if dense is not None:
            lines.append(f"- {name}: our dense build / best dense peer ({peer}) (goal <= "
                         f"{g['dense_ratio']:.2f}x): "
                         + _verdict(dense["ratio_vs_best_peer"], g["dense_ratio"], ".2f", "x")
                         + _rounds_note(dense, g["dense_ratio"]))
        if las is not None and model in g["las_ratio"]:
            lines.append(f"- {name}: LAS {SNET} at r=0.5 / best dense peer ({peer}) (goal <= "
                         f"{g['las_ratio'][model]:.2f}x): "
                         + _verdict(las["ratio_vs_best_peer"], g["las_ratio"][model], ".2f", "x")
                         + (f" (actual r {las['actual_rate']:.3f})"
                            if las.get("actual_rate") is not None else "")
                         + _rounds_note(las, g["las_ratio"][model]))
    return lines + [
        f"- compile time, slowest of {len(compiled)} compiles (goal <= {g['compile_s']:.0f} s): "
        + _verdict(slowest and slowest["compile_seconds"], g["compile_s"], ".1f", " s")
        + (f" ({where(slowest)})" if slowest else ""),
        f"- mask/index handling share of the kernel time, worst LAS model "
        f"(goal <= {g['mask_share']:.0%}): "
        + _verdict(worst and worst["mask_share"], g["mask_share"], ".2%")
        + (f" ({where(worst)})" if worst else ""),
    ]


def summarise(rows: list[dict], meta: dict | None = None) -> str:
    """The Markdown section: run facts, a table per architecture, the goals."""
    lines = []
    if meta:
        lines += [f"{meta.get('date', '?')}, {meta.get('cpu', '?')}, {meta.get('threads')} "
                  f"threads, median of {meta.get('repeats')} runs per measurement, each system "
                  f"in its own process, the fastest of {meta.get('rounds', 1)} full round(s) "
                  f"per row" + (f", commit {meta['commit']}" if meta.get("commit")
                                else "") + ".", ""]
    for case in dict.fromkeys(_case(r) for r in rows):
        lines += [*table(rows, case), ""]
    lines += goals(rows)
    notes = ["", "r (actual): mean over the blocks of the compiled model's mask activation on "
             "the timed image. Mask share: masker, compaction, active-index and mask-cast "
             "kernels / all instrumented VM calls (Relax VM instrument)."]
    if any(r.get("contended") for r in rows):
        notes.append("\\* other processes used the CPU during this measurement (suspect).")
    return "\n".join(lines + notes)


def write_readme_section(markdown: str, command: str, readme: Path = README,
                         batch: int = 1) -> None:
    """Replace the text between our markers (or append it), leaving other sections alone:
    ``e2e`` for batch 1, ``e2e-batch<N>`` for another batch."""
    name = "e2e" if batch == 1 else f"e2e-batch{batch}"
    replace_section(name, f"End to end (`{command}`)", markdown, readme)


def _commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def metadata(repeats: int, systems: Sequence[str], quick: bool) -> dict:
    from .peers import _version

    meta = run_metadata(repeats, 1, systems)
    meta["versions"].update({d: _version(d) for d in ("apache-tvm", "las-compiler")})
    return {**meta, "benchmark": f"end-to-end LAS-ResNet (S_net {SNET}) vs dense peers, "
            f"{IMAGE_SIZE}x{IMAGE_SIZE}", "quick": quick, "seed": SEED,
            "statistic": "median of `repeats` calls (TVM: VM time evaluator); a disturbed "
            "measurement is repeated up to twice in the same process",
            "commit": _commit()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default="results/e2e.json")
    parser.add_argument("--quick", action="store_true",
                        help="LAS-ResNet-50, r=0.5, every system, 10 repeats")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement "
                        "(default 20; --quick: 10)")
    parser.add_argument("--models", help=f"comma-separated, from {','.join(ARCHITECTURES)}")
    parser.add_argument("--rates", help="comma-separated activation rates")
    parser.add_argument("--systems", help=f"comma-separated, from {','.join(SYSTEMS)}")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="full rounds; each configuration reports its fastest round "
                             "(default 2)")
    parser.add_argument("--no-readme", action="store_true", help="do not update the README")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    repeats = args.repeats or (QUICK["repeats"] if args.quick else 20)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    try:
        configs = plan(args.quick, _split(args.models), _split(args.rates, float),
                       _split(args.systems), args.batch)
    except ValueError as err:
        parser.error(str(err))

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    systems = list(dict.fromkeys(c["system"] for c in configs))
    meta = metadata(repeats, systems, args.quick)
    meta["rounds"] = args.rounds
    rows = best_of_rounds([run(configs, repeats, log) for _ in range(args.rounds)])
    meta["wall_seconds"] = round(time.perf_counter() - start, 1)
    failures = {f"{r['model']} {r['system']} {r['rate']}": r["error"] for r in rows
                if r.get("error")}
    path = write_json_atomic(args.json, {"meta": meta, "rows": rows, "failures": failures})
    log(f"[e2e] wrote {path} ({meta['wall_seconds']:.0f} s)")
    markdown = summarise(rows, meta)
    print(markdown)
    if not args.no_readme:
        given = sys.argv[1:] if argv is None else list(argv)
        command = " ".join(["python -m benchmarks.e2e",  # as run, so the heading reproduces it
                            *(a for a in given if a != "--no-readme")])
        write_readme_section(markdown + f"\n\nJSON: `{args.json}`.", command, batch=args.batch)
    return 1 if failures else 0


def _split(text: str | None, kind: Callable[[str], Any] = str) -> list | None:
    return [kind(v) for v in text.split(",") if v.strip()] if text else None


if __name__ == "__main__":
    # Run through the importable module so pickled/qualified names say benchmarks.e2e.
    from benchmarks.e2e import main as _main

    sys.exit(_main())
