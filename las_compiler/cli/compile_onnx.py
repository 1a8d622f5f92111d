"""``las compile model.onnx``: compile an ONNX file (its ``ai.las`` ops sparse), export, report.

The file is its own reference: ONNX Runtime runs it (each LAS op through its standard-op
body) and the compiled module must give the same outputs and masks. Options that build a
model (``--model``, ``--snet``, ``--checkpoint``, ``--rate``, ``--backbone``) do not apply:
the file is the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import Progress

MODEL_OPTIONS = ("model", "snet", "checkpoint", "rate")


def compile_onnx_report(args: argparse.Namespace):
    import las_compiler

    from ..compiler import resolve_target
    from ..deploy.artifact import check_writable, cross_linker
    from ..schedules import check_target
    from ..target import describe_target
    from .compile import CompiledBlockRow, CompileReport, default_output

    source = Path(args.source)
    given = [f"--{name}" for name in MODEL_OPTIONS if getattr(args, name, None) is not None]
    given += ["--backbone"] if args.backbone else []
    if given:
        raise ValueError(f"{', '.join(given)} {'do' if len(given) > 1 else 'does'} not apply "
                         f"to an ONNX file ({source.name}): the file is the model")
    if args.weights_as_inputs or args.weights_beside:
        raise ValueError("--weights-as-inputs is not supported for ONNX files yet: the file's "
                         "weights are compiled in")
    if args.board is not None:
        from ..deploy.boards import get_board

        board = get_board(args.board)
        if args.target is not None:
            raise ValueError(f"--board {args.board} sets the target; give --board or --target")
    else:
        board = None
    target = resolve_target(board.target if board else args.target or "host")
    family = check_target(target)
    glibc = args.glibc or (board.glibc if board else None)
    cross_linker(str(target), glibc)
    missing = family.toolchain_problem(target)
    if missing:
        raise RuntimeError(f"cannot build the device code for {describe_target(target)}: "
                           f"{missing}")
    output = Path(args.output) if args.output else default_output(source.stem, "onnx")
    check_writable(output)
    progress = Progress(not args.json)
    compiled = las_compiler.compile_onnx(
        source, target, args.tuning_logs, batch=args.batch, input_size=args.input_size,
        pipelines=args.pipeline, dump_ir=args.dump_ir, threads=args.threads,
        progress=progress, seed=args.seed,
        metadata={**({"board": board.name} if board else {}),
                  **({"glibc": glibc} if glibc else {})})
    progress(f"exporting to {output}")
    path = compiled.export(output)
    meta = compiled.metadata
    report = CompileReport(
        model=f"{meta['model']} (from {source.name})", snet=meta["snet"],
        input_shape=tuple(meta["input"]["shape"]), target=describe_target(target),
        artifact=str(path), compile_seconds=meta["compile_seconds"], blocks=[],
        stage_activation=[], flops_ratio=None, schedules=meta["schedules"],
        outputs=[o for o in meta["outputs"] if not o.startswith("mask:")])
    if not meta["blocks"]:
        report.notes.append("no ai.las operators in the file: compiled as a dense network")
    activation = [float("nan")] * len(meta["blocks"])
    check = compiled.check_data
    if compiled.runnable and check is not None:
        progress("checking against ONNX Runtime (every output and every mask)")
        out, masks = compiled.run_with_masks(check.input)
        agreement = check.compare(out if isinstance(out, tuple) else [out], masks)
        activation = list(agreement.activation)
        report.max_abs_error = agreement.max_abs_error
        report.output_scale = agreement.output_scale
        report.mask_cells_differing = agreement.mask_cells_differing
        report.masks_equal = agreement.masks_equal
        report.notes.append("reference: ONNX Runtime on the file (the LAS ops computed "
                            "densely through their standard-op bodies), a seeded random image")
    elif check is None:
        report.warnings.append("onnxruntime is not installed: the compiled module was not "
                               "checked against the file")
    if compiled.runnable:
        progress(f"timing ({args.repeats} runs, {compiled.threads_in_effect} threads)")
        report.las_ms = compiled.benchmark(check.input if check is not None else None,
                                           repeat=args.repeats)["median_ms"]
        report.threads = compiled.threads_in_effect
    else:
        report.notes.append(f"not run here: {compiled.unrunnable_reason}")
    stages: dict[str, list[float]] = {}
    for block, active in zip(meta["blocks"], activation, strict=True):
        report.blocks.append(CompiledBlockRow(block["name"], block["S"], block["stride"],
                                              block["pipeline"], active, None))
        stages.setdefault(block["name"].split(".")[0], []).append(active)
    report.stage_activation = [float(np.mean(v)) for v in stages.values()]
    progress.done()
    return report
