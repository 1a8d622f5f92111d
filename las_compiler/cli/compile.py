"""``las compile``: build (or load) a LAS-ResNet, compile it, export the artifact, report.

The report says what a user deciding whether to ship the sparse model needs: per-block and
per-stage activation, the FLOPs ratio, whether the compiled module matches PyTorch (logits and
every mask), and its latency next to the same network compiled dense by us (``las bench``
compares with ONNX Runtime and PyTorch too).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .common import (
    Progress,
    add_json,
    add_model_args,
    add_threads,
    out_stages,
    positive_int,
    subcommand,
)


@dataclass
class CompiledBlockRow:
    name: str
    granularity: int
    stride: int
    pipeline: str
    activation: float  # mean of the compiled module's mask on the example input
    flops_ratio: float | None  # None: not known (a model compiled from an ONNX file)


@dataclass
class CompileReport:
    model: str
    snet: str
    input_shape: tuple[int, ...]
    target: str
    artifact: str
    compile_seconds: float
    blocks: list[CompiledBlockRow]
    stage_activation: list[float]
    flops_ratio: float | None
    max_abs_error: float | None = None
    masks_equal: bool | None = None
    mask_cells_differing: int | None = None
    las_ms: float | None = None
    dense_ms: float | None = None
    dense_compile_seconds: float | None = None
    threads: int | None = None
    schedules: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["logits"])
    output_scale: float | None = None  # largest |output| of PyTorch's, beside the error
    reference: str = "PyTorch"  # what the compiled module was checked against

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [f"{self.model}  S_net={self.snet}  input={list(self.input_shape)}  "
                 f"target={self.target}",
                 f"compiled in {self.compile_seconds:.1f} s -> {self.artifact}",
                 f"schedules: {self.schedules}",
                 f"{'block':<11}{'S':>3}{'stride':>7}  {'pipeline':<13}{'active':>7}"
                 f"{'FLOPs':>7}"]
        for b in self.blocks:
            flops = "-" if b.flops_ratio is None else f"{b.flops_ratio:.3f}"
            lines.append(f"{b.name:<11}{b.granularity:>3}{b.stride:>7}  {b.pipeline:<13}"
                         f"{b.activation:>7.3f}{flops:>7}")
        stages = "  ".join(f"stage {i + 1}: {a:.3f}" for i, a in enumerate(self.stage_activation))
        if stages:
            lines.append(f"activation per stage: {stages}")
        if self.flops_ratio is not None:
            lines.append(f"network FLOPs ratio (sparse / dense): {self.flops_ratio:.3f}")
        if self.max_abs_error is not None:
            masks = "masks identical" if self.masks_equal else (
                f"masks differ at {self.mask_cells_differing} patch cells (logits that tie "
                f"within float rounding can compare differently in TVM and {self.reference})")
            what = "logit" if self.outputs == ["logits"] else \
                f"feature ({'/'.join(self.outputs)}, values up to {self.output_scale:.3g})"
            lines.append(f"compiled vs {self.reference}: max |{what} diff| "
                         f"{self.max_abs_error:.2e}, {masks}")
        if self.las_ms is not None:
            line = f"latency (median, {self.threads} threads): LAS {self.las_ms:.2f} ms"
            if self.dense_ms is not None:
                line += (f", dense (same network, all blocks static, compiled by us) "
                         f"{self.dense_ms:.2f} ms, ratio {self.las_ms / self.dense_ms:.2f}")
            lines.append(line)
        lines += self.notes
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def default_output(model_name: str, snet: str, backbone: bool = False) -> Path:
    return Path("out") / (f"{model_name}-{snet}" + ("-backbone" if backbone else ""))


def compile_report(args: argparse.Namespace) -> CompileReport:
    """Build, compile, export, check and time; see the module docstring."""
    import torch

    import las_compiler

    from ..compiler import resolve_target
    from ..deploy.artifact import check_writable, cross_linker
    from ..models import model_name as model_name_of
    from ..models import prepare_model
    from ..schedules import check_target
    from ..target import describe_target
    from ..verify import compare_with_pytorch

    progress = Progress(not args.json)
    # fail fast, before the model is compiled
    board = None
    if args.board is not None:
        from ..deploy.boards import get_board

        board = get_board(args.board)
        if args.target is not None:
            raise ValueError(f"--board {args.board} sets the target; give --board or --target")
    if args.weights_beside and not args.weights_as_inputs:
        raise ValueError("--weights-beside stores a code-only build's weights: add "
                         "--weights-as-inputs")
    target = resolve_target(board.target if board else args.target or "host")
    family = check_target(target)
    glibc = args.glibc or (board.glibc if board else None)
    if args.output:
        check_writable(Path(args.output))
    cross_linker(str(target), glibc)  # a cross target needs its linker for the export
    missing = family.toolchain_problem(target)  # ... and device code its toolchain
    if missing:
        raise RuntimeError(f"cannot build the device code for {describe_target(target)}: "
                           f"{missing}")
    progress("building the model" + (f" from {Path(args.checkpoint).name}" if args.checkpoint
                                     else ""))
    prepared = prepare_model(args.model, args.snet, args.rate, args.input_size, args.batch or 1,
                             args.checkpoint, args.seed, out_stages(args))
    model, x = prepared.model, prepared.example
    for line in prepared.notes:
        progress(line)
    for line in prepared.warnings:
        print(f"WARNING: {line}", file=sys.stderr, flush=True)
    model_name = model_name_of(model)
    output = Path(args.output) if args.output else default_output(
        model_name, model.granularity_spec, model.is_backbone)
    check_writable(output)
    rate = 0.5 if prepared.rate is None else prepared.rate
    compiled = las_compiler.compile(
        model, x, target, args.tuning_logs, pipelines=args.pipeline, expected_rate=rate,
        dump_ir=args.dump_ir, threads=args.threads, progress=progress,
        metadata={"rate": prepared.rate, "seed": args.seed, "checkpoint": args.checkpoint,
                  **({"board": board.name} if board else {}),
                  **({"glibc": glibc} if glibc else {})},
        weights_as_inputs=args.weights_as_inputs)
    progress(f"exporting to {output}")
    path = compiled.export(output, weights_beside=args.weights_beside)
    with torch.no_grad():
        _, stats = model.forward_with_stats(x)
    report = CompileReport(
        model=model_name + (" backbone" if model.is_backbone else ""),
        snet=model.granularity_spec, input_shape=tuple(x.shape),
        target=describe_target(target), artifact=str(path),
        compile_seconds=compiled.metadata["compile_seconds"], blocks=[], stage_activation=[],
        flops_ratio=float(stats.sparse_flops) / stats.dense_flops,
        schedules=compiled.metadata["schedules"], notes=list(prepared.notes),
        warnings=list(prepared.warnings), outputs=model.output_names)
    activation = [float(s.activation) for s in stats.blocks]
    if compiled.takes_weights:
        report.notes.append(f"code only: {len(compiled.metadata['weights'])} weights are inputs "
                            "(`las run --weights FILE`, or CompiledModel.set_weights("
                            "state_dict)), prepared on the device by the module")
        if compiled.runnable:
            compiled.set_weights(model.state_dict())
    if compiled.runnable:
        progress("checking against PyTorch (every output and every mask)")
        agreement = compare_with_pytorch(compiled, model, x)
        activation = list(agreement.activation)
        report.max_abs_error = agreement.max_abs_error
        report.output_scale = agreement.output_scale
        report.mask_cells_differing = agreement.mask_cells_differing
        report.masks_equal = agreement.masks_equal
        progress(f"timing ({args.repeats} runs, {compiled.threads_in_effect} threads)")
        report.las_ms = compiled.benchmark(x, repeat=args.repeats)["median_ms"]
        report.threads = compiled.threads_in_effect
        if not args.no_dense:
            progress("compiling and timing the same network dense, for comparison")
            blocks = range(len(list(model.dynamic_blocks())))
            dense = las_compiler.compile(model, x, target, args.tuning_logs, static_blocks=blocks,
                                         threads=args.threads)
            report.dense_compile_seconds = dense.metadata["compile_seconds"]
            report.dense_ms = dense.benchmark(x, repeat=args.repeats)["median_ms"]
    else:
        report.notes.append(f"not run here: {compiled.unrunnable_reason} (on the board: "
                            f"`las deploy {path} --rpc HOST:PORT` checks and times it there)")
        library = json.loads((path / "metadata.json").read_text())["library"]
        if "machine" in library:
            report.notes.append(
                f"library: {library['bytes'] / 2**20:.1f} MiB of {library['machine']} code"
                f"{', stripped' if library.get('stripped') else ''}, needs glibc "
                f"{library.get('glibc') or '(none)'} or newer")
        if "device_code" in compiled.metadata:
            report.notes.append(family.describe_device_code(compiled.metadata["device_code"]))
    stage_values: dict[str, list[float]] = {}
    for meta, stat, active in zip(compiled.metadata["blocks"], stats.blocks, activation,
                                  strict=True):
        report.blocks.append(CompiledBlockRow(meta["name"], meta["S"], meta["stride"],
                                              meta["pipeline"], active,
                                              float(stat.sparse_flops) / stat.dense_flops))
        stage_values.setdefault(meta["name"].split(".")[0], []).append(active)
    report.stage_activation = [float(np.mean(v)) for v in stage_values.values()]
    progress.done()
    return report


def run(args: argparse.Namespace) -> int:
    if args.source is not None:
        from .compile_onnx import compile_onnx_report

        report = compile_onnx_report(args)
    else:
        report = compile_report(args)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0


def register(sub) -> None:
    from ..block_pipelines import AUTO, PIPELINES
    from ..deploy.boards import BOARDS

    parser = subcommand(sub, "compile", "compile a LAS-ResNet (or an ONNX file) for a target, "
                        "export, report")
    parser.add_argument("source", nargs="?", default=None, metavar="MODEL.onnx",
                        help="an ONNX file to compile (its ai.las operators sparse, see "
                             "`las export-onnx`) instead of building a model from --model")
    add_model_args(parser)
    # None: an ONNX file keeps its own batch; a built model takes 1
    parser.set_defaults(batch=None)
    parser.add_argument("--target", default=None,
                        help="'host' (the default), a TVM tag (e.g. nvidia/jetson-tx2) or a "
                             "target JSON object")
    parser.add_argument("--board", default=None, choices=sorted(BOARDS),
                        help="compile for an edge board: its target, linked against its glibc")
    parser.add_argument("--glibc", default=None, metavar="X.Y",
                        help="the oldest glibc the library must load with (a cross target; "
                             "default: the board's, else 2.17)")
    parser.add_argument("-o", "--output", default=None,
                        help="artifact directory (default: out/<model>-<snet>)")
    parser.add_argument("--tuning-logs", default=None,
                        help="tuning-log directory (default: tuning_logs/<target name>/ when "
                             "present)")
    parser.add_argument("--pipeline", default=AUTO, choices=(AUTO, *PIPELINES),
                        help="block pipeline of every dynamic block ('auto': the latency "
                             "predictor's choice per block)")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip compiling and timing the dense network for comparison")
    parser.add_argument("--repeats", type=positive_int, default=30, help="timed runs per latency")
    parser.add_argument("--weights-as-inputs", action="store_true",
                        help="compile code only: the artifact carries no weights; they are "
                             "given when it is loaded (a PyTorch state_dict)")
    parser.add_argument("--weights-beside", action="store_true",
                        help="with --weights-as-inputs: store the weights beside the code "
                             "(weights.params, TVM's format), prepared when the artifact loads")
    parser.add_argument("--dump-ir", default=None, metavar="DIR",
                        help="write the IR after every pipeline phase to DIR")
    add_threads(parser)
    add_json(parser)
    parser.set_defaults(func=run)
