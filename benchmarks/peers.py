"""Dense LAS-ResNet-50 bottleneck blocks in peer frameworks (ONNX Runtime, OpenVINO, PyTorch
eager and torch.compile).

These are the baselines our TVM kernels are compared against: the *dense* block
``relu(identity(x) + residual(x))`` (every patch on, no masker), at the ResNet-50 shapes of a
224x224 image, batch 1, 2 threads.

Why every measurement runs in its own process
--------------------------------------------
PyTorch's OpenMP workers, ONNX Runtime's intra-op pool and TVM's thread pool spin while idle.
In one process they fight over the 2 cores, and single measurements come out 10-20x slower
(measured on this machine). So each (block, framework, round) is measured in a fresh
interpreter started by :func:`benchmarks._isolate.run_isolated`, which pins
``OMP_NUM_THREADS``/``TVM_NUM_THREADS`` before the child imports anything. The parent never
imports torch or onnxruntime (this module imports them inside functions), so a later
comparison with TVM can drive everything from one parent.

In the child: build and export (setup), sleep briefly, warm up for a fraction of a second
(thread pools that slept through setup wake, the clock ramps), then time ``repeats`` calls and
take the median. Machines are noisy, so :func:`measure_peers` runs ``rounds`` rounds with the
frameworks interleaved and reports the median of the round medians.

Isolation does not help against *other* jobs on the machine: one busy core elsewhere makes ORT
~3x and torch ~20x slower here. Each child reports how much CPU other processes used while it
measured (``/proc/stat``); the parent waits for a quiet machine before each child, repeats
disturbed measurements, drops disturbed rounds when quiet ones exist, and flags (``*``) the
rows where none was quiet.

Usage::

    python -m benchmarks.peers [--quick] [--json results/peers.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._isolate import (
    DEFAULT_THREADS,
    MAX_FOREIGN_CORES,
    run_isolated,
    timed_runs,
    wait_for_idle,
)
from las_compiler.dense_peers import ort_session
from las_compiler.predictor.layers import EXPANSION, STAGE_WIDTHS, BlockLayer

if TYPE_CHECKING:
    import torch

THREADS = DEFAULT_THREADS
SETTLE_S = 0.2  # sleep between setup (build, export) and the warm-up
WARMUP_S = 0.3
# ORT output vs torch eager: max |diff| must stay below this fraction of max |output|.
ORT_RTOL = 1e-4
# A measurement during which other processes used more CPU than this is repeated / flagged.
FRAMEWORKS = ("onnxruntime", "openvino", "torch_eager", "torch_compile")
QUICK_SHAPES = ("s1b0", "s4b1")
MODULE = "benchmarks.peers"  # not __name__: that is "__main__" under `python -m`


def _resnet50_shapes() -> tuple[BlockLayer, ...]:
    """The first two bottlenecks of each ResNet-50 stage at 224x224, batch 1, named
    ``s<stage>b<index>``: ``BlockLayer`` s, the compiler's and the predictor's block shape."""
    shapes = []
    in_channels, size = 64, 56
    for stage, planes in enumerate(STAGE_WIDTHS, start=1):
        stride = 1 if stage == 1 else 2
        out_channels = planes * EXPANSION
        for index in (0, 1):
            shapes.append(BlockLayer(1, size, size, in_channels, planes, out_channels, stride,
                                     downsample=index == 0, name=f"s{stage}b{index}",
                                     stage=stage))
            in_channels, size, stride = out_channels, (size - 1) // stride + 1, 1
    return tuple(shapes)


BLOCK_SHAPES: tuple[BlockLayer, ...] = _resnet50_shapes()
SHAPES_BY_NAME = {s.name: s for s in BLOCK_SHAPES}


def as_shape(shape: BlockLayer | dict | str) -> BlockLayer:
    """Accept a block shape, its ``asdict`` form (what crosses process boundaries) or a name."""
    if isinstance(shape, str):
        return SHAPES_BY_NAME[shape]
    if isinstance(shape, dict):
        return BlockLayer(**shape)
    return shape


def gflops(shape: BlockLayer, ms: float) -> float:
    """GFLOP/s of one dense block in ``ms`` milliseconds (2 FLOPs per multiply-accumulate)."""
    return 2 * shape.dense_macs() / (ms * 1e-3) / 1e9


# -- the models --------------------------------------------------------------------------------


def make_block(shape: BlockLayer | dict | str, seed: int = 0):
    """The LAS ``Bottleneck`` for a shape, eval mode, deterministic from ``seed``.

    Conv weights get PyTorch's default init under ``seed`` (the caller's global RNG is left
    alone); BN running stats and affine parameters are randomised so BN folding or ordering
    mistakes show up. The masker keeps its init (weights 0, biases 5/1): every patch is on,
    so ``block(x)`` equals the dense block.
    """
    import torch

    from las_compiler.models import Bottleneck, randomise_bn

    shape = as_shape(shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        block = Bottleneck(shape.in_channels, shape.planes, shape.stride, granularity=1)
    randomise_bn(block, seed + 1)
    return block.eval()


@functools.cache
def _dense_class() -> type:
    # Defined on first use so that importing this module does not import torch.
    import torch

    class DenseBottleneck(torch.nn.Module):
        """``relu(identity(x) + residual(x))``: a LAS block with every patch on, no masker."""

        def __init__(self, block):
            super().__init__()
            self.block = block

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.block.identity(x) + self.block.residual(x))

    return DenseBottleneck


def dense_block(block) -> torch.nn.Module:
    """Wrap a LAS ``Bottleneck`` as the dense block the peers compute (eval mode)."""
    return _dense_class()(block).eval()


def make_dense_block(shape: BlockLayer | dict | str, seed: int = 0) -> torch.nn.Module:
    """``dense_block(make_block(shape, seed))``."""
    return dense_block(make_block(shape, seed))


def make_input(shape: BlockLayer | dict | str, seed: int = 0) -> torch.Tensor:
    """A deterministic NCHW float32 input (1, C, H, W) for a shape."""
    import torch

    shape = as_shape(shape)
    gen = torch.Generator().manual_seed(seed + 2)
    return torch.randn(1, shape.in_channels, shape.height, shape.width, generator=gen)


# -- ONNX Runtime --------------------------------------------------------------------------------


class PeerMismatchError(AssertionError):
    """A peer's output differs from torch eager: its timing would measure something else."""


def export_onnx(shape: BlockLayer | dict | str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Export the dense block to ONNX (dynamo exporter, opset 18; weights may go to
    ``<path>.data`` next to it). Returns ``path``."""
    import torch

    shape = as_shape(shape)
    torch.onnx.export(
        make_dense_block(shape, seed),
        (make_input(shape, seed),),
        str(path),
        dynamo=True,
        opset_version=18,
        verbose=False,
    )
    return Path(path)


def check_onnxruntime(
    shape: BlockLayer | dict | str,
    seed: int = 0,
    onnx_path: str | os.PathLike | None = None,
    threads: int = THREADS,
    rtol: float = ORT_RTOL,
) -> dict:
    """Export (unless ``onnx_path`` exists), run in ORT, compare with torch eager.

    Returns ``{"session", "feed", "max_abs_err", "scale"}``; raises :class:`PeerMismatchError`
    if ``max_abs_err > rtol * scale`` (scale = max |torch output|). The torch reference runs
    on one thread so no OpenMP pool is left spinning next to ORT's.
    """
    import numpy as np
    import torch

    shape = as_shape(shape)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="las-onnx-") as tmp:
        path = Path(onnx_path) if onnx_path is not None else Path(tmp, f"{shape.name}.onnx")
        if not path.exists():
            export_onnx(shape, path, seed)
        session = ort_session(path, threads)  # reads external weights now; tmp may go
    x = make_input(shape, seed)
    with torch.inference_mode():
        ref = make_dense_block(shape, seed)(x).numpy()
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(x.numpy())}
    (out,) = session.run(None, feed)
    if out.shape != ref.shape:
        raise PeerMismatchError(
            f"{shape.name}: ONNX Runtime output shape {out.shape} != torch {ref.shape}"
        )
    err = float(np.abs(out - ref).max())
    scale = float(np.abs(ref).max())
    if not err <= rtol * scale:  # also catches NaN
        raise PeerMismatchError(
            f"{shape.name}: ONNX Runtime output differs from torch eager: max |diff| {err:.3g} "
            f"> {rtol:g} x max |output| {scale:.3g}; the exported graph is not the dense block"
        )
    return {"session": session, "feed": feed, "max_abs_err": err, "scale": scale}


# -- the measurements (each meant to run in its own process) -----------------------------------


def measure_child(
    framework: str,
    shape: BlockLayer | dict | str,
    repeats: int = 20,
    seed: int = 0,
    onnx_dir: str | None = None,
    warmup_s: float = WARMUP_S,
) -> dict:
    """One measurement, as run in an isolated process: the full :func:`median_ms` dict
    (``median_ms``, ``min_ms``, ``runs``, ``foreign_cores``) for ``framework``."""
    shape = as_shape(shape)
    if framework == "onnxruntime":
        path = None if onnx_dir is None else Path(onnx_dir, f"{shape.name}-seed{seed}.onnx")
        check = check_onnxruntime(shape, seed, path)
        session, feed = check["session"], check["feed"]
        time.sleep(SETTLE_S)
        return timed_runs(lambda: session.run(None, feed), repeats, warmup_s)
    if framework == "openvino":
        import numpy as np
        import torch

        from las_compiler.dense_peers import openvino_model

        torch.set_num_threads(1)  # the reference only; no torch pool spinning beside OpenVINO
        model, x = make_dense_block(shape, seed), make_input(shape, seed)
        run = openvino_model(model, x, THREADS)
        array = np.ascontiguousarray(x.numpy())
        with torch.inference_mode():
            ref = model(x).numpy()
        err, scale = float(np.abs(run(array)[0] - ref).max()), float(np.abs(ref).max())
        if not err <= ORT_RTOL * scale:
            raise PeerMismatchError(f"{shape.name}: OpenVINO output differs from torch eager: "
                                    f"max |diff| {err:.3g} > {ORT_RTOL:g} x {scale:.3g}")
        time.sleep(SETTLE_S)
        return timed_runs(lambda: run(array), repeats, warmup_s)
    if framework in ("torch_eager", "torch_compile"):
        import torch

        torch.set_num_threads(THREADS)
        model = make_dense_block(shape, seed).to(memory_format=torch.channels_last)
        x = make_input(shape, seed).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if framework == "torch_compile":
                model = torch.compile(model)
                for _ in range(3):  # compiles, then settles its caches
                    model(x)
            time.sleep(SETTLE_S)
            return timed_runs(lambda: model(x), repeats, warmup_s)
    raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")


def measure_onnxruntime(
    shape: BlockLayer | dict | str,
    repeats: int = 20,
    seed: int = 0,
    onnx_dir: str | None = None,
) -> float:
    """Median ms of the dense block in ONNX Runtime (2 intra-op threads), output verified
    against torch eager (:class:`PeerMismatchError` if it differs).

    Run it in its own process (see the module docstring). With ``onnx_dir`` the export is
    cached there as ``<name>-seed<seed>.onnx`` and reused by later rounds.
    """
    return measure_child("onnxruntime", shape, repeats, seed, onnx_dir)["median_ms"]


def measure_torch_eager(shape: BlockLayer | dict | str, repeats: int = 20, seed: int = 0) -> float:
    """Median ms of the dense block in PyTorch eager, channels_last, 2 threads, inference mode.

    Sets this process's torch thread count: run it in its own process.
    """
    return measure_child("torch_eager", shape, repeats, seed)["median_ms"]


def _quiet(foreign_cores: float | None, max_foreign_cores: float) -> bool:
    return foreign_cores is None or foreign_cores <= max_foreign_cores


def measure_peers(
    shapes: Sequence[BlockLayer | str] = BLOCK_SHAPES,
    frameworks: Sequence[str] = FRAMEWORKS,
    repeats: int = 20,
    rounds: int = 3,
    *,
    seed: int = 0,
    timeout: float = 600.0,
    max_foreign_cores: float = MAX_FOREIGN_CORES,
    retries: int = 2,
    idle_wait_s: float = 15.0,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Measure each dense block in each framework, one fresh process per measurement.

    Rounds are the outer loop and the framework order rotates from block to block and round to
    round, so slow phases of a noisy machine spread over all frameworks. Before each process
    starts, we wait (up to ``idle_wait_s``) until other processes use at most
    ``max_foreign_cores`` cores; a measurement during which they used more is repeated up to
    ``retries`` times and the least disturbed attempt kept.

    Each row reports the median of the per-round medians (each over ``repeats`` timed calls)
    of the rounds that stayed quiet (all rounds if none did):
    ``{"stage", "block", "stride", "variant": "dense_<framework>", "median_ms", "gflops"}``
    plus ``"round_ms"`` and ``"round_foreign_cores"`` (every round), ``"rounds_used"``,
    ``"min_ms"`` (fastest single call of the rounds used), ``"dense_macs"`` and
    ``"contended"`` (no round was quiet: the numbers are suspect).
    """
    shapes = [as_shape(s) for s in shapes]
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {unknown}; known: {', '.join(FRAMEWORKS)}")
    if rounds < 1 or repeats < 1:
        raise ValueError(f"rounds and repeats must be >= 1, got {rounds}, {repeats}")
    say = log or (lambda msg: None)
    results: dict[tuple[str, str], list[dict]] = {
        (s.name, f): [] for s in shapes for f in frameworks
    }
    with tempfile.TemporaryDirectory(prefix="las-peers-") as onnx_dir:
        for r in range(rounds):
            for i, shape in enumerate(shapes):
                k = (r + i) % len(frameworks)
                for fw in (*frameworks[k:], *frameworks[:k]):
                    kwargs = {"framework": fw, "shape": asdict(shape), "repeats": repeats,
                              "seed": seed, "onnx_dir": onnx_dir}
                    where = f"round {r + 1}/{rounds} {shape.name} {fw}"
                    best = None
                    for attempt in range(retries + 1):
                        before = wait_for_idle(max_foreign_cores, timeout=idle_wait_s)
                        if before is not None and before > max_foreign_cores:
                            say(f"{where}: machine busy ({before:.2f} other cores), "
                                "measuring anyway")
                        res = run_isolated(f"{MODULE}:measure_child", kwargs, timeout)
                        foreign = res["foreign_cores"]
                        if best is None or (foreign or 0) < (best["foreign_cores"] or 0):
                            best = res
                        msg = f"{where}: {res['median_ms']:.3f} ms"
                        if _quiet(foreign, max_foreign_cores):
                            say(msg if foreign is None else f"{msg} (others {foreign:.2f} cores)")
                            break
                        say(f"{msg} (other processes used {foreign:.2f} cores"
                            + ("; retrying)" if attempt < retries else ")"))
                    results[shape.name, fw].append(best)
    rows = []
    for shape in shapes:
        for fw in frameworks:
            res = results[shape.name, fw]
            clean = [x for x in res if _quiet(x["foreign_cores"], max_foreign_cores)]
            used = clean or res  # contended rounds only count if no round was clean
            ms = statistics.median(x["median_ms"] for x in used)
            rows.append({
                "stage": shape.stage,
                "block": shape.name,
                "stride": shape.stride,
                "variant": f"dense_{fw}",
                "median_ms": round(ms, 4),
                "gflops": round(gflops(shape, ms), 2),
                "round_ms": [round(x["median_ms"], 4) for x in res],
                "round_foreign_cores": [
                    None if x["foreign_cores"] is None else round(x["foreign_cores"], 3)
                    for x in res
                ],
                "rounds_used": len(used),
                "min_ms": round(min(x["min_ms"] for x in used), 4),
                "dense_macs": int(shape.dense_macs()),
                "contended": not clean,
            })
    return rows


# -- reporting -----------------------------------------------------------------------------------


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table: one line per block, ms and GFLOP/s per variant."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    header = ["block", "stride", "in -> out", "GMACs"]
    for v in variants:
        header += [f"{v} ms", "GFLOP/s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_block: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_block.setdefault(r["block"], {})[r["variant"]] = r
    for name, cells in by_block.items():
        s = SHAPES_BY_NAME[name]
        line = [name, str(s.stride),
                f"{s.in_channels}@{s.height} -> {s.out_channels}@{s.out_height}",
                f"{s.dense_macs() / 1e9:.3f}"]
        for v in variants:
            r = cells.get(v)
            if r is None:
                line += ["-", "-"]
                continue
            mark = "*" if r.get("contended") else ""
            line += [f"{r['median_ms']:.3f}{mark}", f"{r['gflops']:.1f}"]
        lines.append("| " + " | ".join(line) + " |")
    if any(r.get("contended") for r in rows):
        lines.append("")
        lines.append("\\* other processes used the CPU in every round of this measurement")
    return "\n".join(lines)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON to a temporary file next to ``path``, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_metadata(repeats: int, rounds: int, frameworks: Sequence[str],
                 max_foreign_cores: float = MAX_FOREIGN_CORES) -> dict:
    return {
        "benchmark": "dense LAS-ResNet-50 bottleneck blocks, 224x224 input, batch 1",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": THREADS,
        "repeats": repeats,
        "rounds": rounds,
        "frameworks": list(frameworks),
        "statistic": "median over quiet rounds of the per-round median of `repeats` calls",
        "max_foreign_cores": max_foreign_cores,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("torch", "onnxruntime", "onnx", "onnxscript")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK_SHAPES)} blocks, 10 repeats, 1 round")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON (atomically)")
    parser.add_argument("--blocks", help="comma-separated block names, e.g. s1b0,s4b1")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated, from {','.join(FRAMEWORKS)}")
    parser.add_argument("--repeats", type=int, help="timed calls per process (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--max-foreign-cores", type=float, default=MAX_FOREIGN_CORES,
                        help="CPU other processes may use during a measurement before it is "
                        "repeated and flagged (default %(default)s cores)")
    args = parser.parse_args(argv)

    names = args.blocks.split(",") if args.blocks else (
        QUICK_SHAPES if args.quick else [s.name for s in BLOCK_SHAPES])
    unknown = [n for n in names if n not in SHAPES_BY_NAME]
    if unknown:
        parser.error(f"unknown block(s) {unknown}; known: {', '.join(SHAPES_BY_NAME)}")
    repeats = args.repeats or (10 if args.quick else 20)
    rounds = args.rounds or (1 if args.quick else 3)
    frameworks = tuple(f for f in args.frameworks.split(",") if f)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    rows = measure_peers([SHAPES_BY_NAME[n] for n in names], frameworks, repeats, rounds,
                         max_foreign_cores=args.max_foreign_cores, log=log)
    log(f"done in {time.perf_counter() - start:.0f} s")
    print(format_table(rows), flush=True)
    contended = [f"{r['block']} {r['variant']}" for r in rows if r["contended"]]
    if contended:
        log(f"warning: other processes used the CPU during: {', '.join(contended)}")
    if args.json:
        meta = run_metadata(repeats, rounds, frameworks, args.max_foreign_cores)
        path = write_json_atomic(args.json, {"meta": meta, "rows": rows})
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    # Run through the importable module so pickled/qualified names say benchmarks.peers.
    from benchmarks.peers import main as _main

    sys.exit(_main())
