"""``las_compiler.compile``: a LAS-ResNet and a target in, a runnable, exportable module out.

Two steps, so any frontend can enter between them:

    model (eval) --frontend.import_torch--> Relax module with las.* calls + model info
                 --build(mod, target)-----> CompiledModel (our kernels + rules, Relax VM)

``build`` is target-generic: the target's family picks the phases (``phases.phases``), its
rules schedule the kernels, its device runs them. The number of active patches is decided at
run time by each block's masker; batch size and input resolution are fixed per compile (the
example input's shape). :func:`compile_block` compiles one block the same way (the block
benchmark and the predictor's calibration time what the compiler emits).
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

from ._version import __version__
from .deploy.compiled_model import CompiledModel, load

__all__ = ["CompiledModel", "build", "compile", "compile_block", "load"]


def _versions() -> dict:
    import tvm

    versions = {"las_compiler": __version__, "tvm": tvm.__version__,
                "python": platform.python_version()}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:  # another frontend
        pass
    return versions


def _open_tuning_log(tuning_logs, target):
    """(TuningLog or None, a sentence on which schedules the compile uses)."""
    from .tuning import TuningLog, TuningLogError, default_log_dir, log_name

    if tuning_logs is False:
        return None, "untuned rules (tuning logs disabled)"
    path = default_log_dir(target) if tuning_logs is None else Path(tuning_logs)
    if path is None:
        return None, (f"untuned rules: no tuning log for {log_name(target)} (run `las tune` "
                      f"or pass tuning_logs)")
    try:
        return TuningLog(path), f"tuning log {path}"
    except TuningLogError as err:
        raise ValueError(str(err)) from None


def resolve_target(spec):
    """The one place that turns what a user typed into the ``tvm.target.Target`` a compile
    uses: parsed (:func:`las_compiler.target.parse_target`: ``"host"``, a TVM tag, a kind, a
    dict or its JSON, a ``Target``), then completed by its family (``TargetFamily.complete``:
    a Jetson's aarch64 host CPU, say; an arch the family's rules do not serve is a clear
    error). A target no family serves is returned as parsed; :func:`_checked_target` names
    it."""
    from .schedules import family_of
    from .target import parse_target

    target = parse_target(spec)
    family = family_of(target)
    return family.complete(target) if family is not None else target


def _checked_target(target):
    """The resolved target; an unsupported family fails here, before any work."""
    from .schedules import check_target
    from .target import EmulatedGPU

    if isinstance(target, EmulatedGPU):
        check_target(target.gpu)
        return target
    tvm_target = resolve_target(target)
    check_target(tvm_target)
    return tvm_target


def compile(  # noqa: A001 - the public name the design asks for
    model,
    example_input,
    target="host",
    tuning_logs: str | os.PathLike | None = None,
    *,
    pipelines: str | Sequence[str] = "auto",
    static_blocks: Collection[int] = (),
    expected_rate: float = 0.5,
    dump_ir: str | os.PathLike | None = None,
    metadata: dict | None = None,
    threads: int | None = None,
    progress=None,
    weights_as_inputs: bool = False,
) -> CompiledModel:
    """Compile an eval-mode LAS-ResNet for ``target``.

    Parameters
    ----------
    model
        A :class:`~las_compiler.models.LASResNet` in eval mode (weights are baked in).
    example_input
        A tensor (N, 3, H, W): fixes batch size and resolution of the compiled module.
    target
        ``"host"``, a TVM tag, a target dict or JSON (see :func:`resolve_target`).
    tuning_logs
        A tuning-log directory (a meta_schedule JSONDatabase written by ``las tune``); its
        best knobs replace the rules' defaults for the kernels it covers. None: the log of
        this target under ``tuning_logs/`` if there is one; False: none.
    pipelines
        Block pipeline (``las_compiler.block_pipelines.PIPELINES``) for every dynamic block,
        or one per dynamic block; ``"auto"``: the latency predictor's choice per block.
    static_blocks
        Indices of blocks compiled as dense blocks (no masker, every pixel computed).
    expected_rate
        The activation rate ``"auto"`` chooses pipelines for.
    dump_ir
        Directory for the IR after each pipeline phase.
    metadata
        Extra fields for the artifact's metadata (e.g. the calibration rate).
    threads
        TVM threads the compiled module runs with (default: see ``deploy.threads``).
    progress
        Called with the name of each step as it starts (export, each compile phase).
    weights_as_inputs
        Compile code only: the module takes its weights at run time (``CompiledModel.
        set_weights(state_dict)`` prepares them on the device with the module's own
        ``main_transform_params``); the artifact then carries no weights.
    """
    from .block_pipelines import check_pipelines
    from .frontend import import_torch
    from .verify import reference_check

    tvm_target = _checked_target(target)
    check_pipelines(pipelines)
    start = time.perf_counter()
    if progress is not None:
        progress("exporting the model (torch.export)")
    mod = import_torch(model, example_input, static_blocks, pipelines, weights_as_inputs)
    compiled = build(mod, tvm_target, tuning_logs, expected_rate=expected_rate,
                     dump_ir=dump_ir, metadata=metadata, started=start, threads=threads,
                     progress=progress)
    # what a board that runs the artifact is checked against (`las deploy`), without torch
    compiled.check_data = reference_check(model, example_input, static_blocks)
    if weights_as_inputs:  # for an export with its weights in a file beside the code
        compiled.source_weights = model.state_dict()
    return compiled


def compile_onnx(source, target="host", tuning_logs: str | os.PathLike | None = None, *,
                 batch: int | None = None, input_size: tuple[int, int] | None = None,
                 pipelines: str | dict[str, str] = "auto", expected_rate: float = 0.5,
                 dump_ir: str | os.PathLike | None = None, metadata: dict | None = None,
                 threads: int | None = None, progress=None, seed: int = 0) -> CompiledModel:
    """Compile an ONNX file (a path or ``onnx.ModelProto``): its ``ai.las`` nodes as sparse
    blocks, every standard op dense (a file without LAS ops compiles as a dense network).

    ``batch`` / ``input_size`` fix the input shape where the file leaves it dynamic;
    ``pipelines``: one block pipeline, or one per block name. The artifact's check data
    (what ``las deploy`` compares a board against) is ONNX Runtime's result on a seeded
    random image, where onnxruntime is installed. Other parameters as in :func:`compile`.
    """
    import importlib.util

    import numpy as np

    from .block_pipelines import check_pipelines
    from .frontend.onnx import import_onnx, load_model

    tvm_target = _checked_target(target)
    check_pipelines(pipelines if isinstance(pipelines, str) else list(pipelines.values()))
    start = time.perf_counter()
    if progress is not None:
        progress("importing the ONNX model")
    model = load_model(source)
    mod = import_onnx(model, batch, input_size, pipelines)
    origin = {"onnx": str(source)} if not hasattr(source, "SerializeToString") else {}
    compiled = build(mod, tvm_target, tuning_logs, expected_rate=expected_rate,
                     dump_ir=dump_ir, metadata={**origin, **(metadata or {})}, started=start,
                     threads=threads, progress=progress)
    if importlib.util.find_spec("onnxruntime") is not None:  # else: no check data
        from .verify import onnx_reference_check

        shape = compiled.metadata["input"]["shape"]
        image = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        compiled.check_data = onnx_reference_check(model, image, compiled.metadata["outputs"])
    return compiled


def compile_block(block, example_input, target="host", pipeline: str = "auto", *,
                  static: bool = False, tuning_logs=None, expected_rate: float = 0.5,
                  dump_ir: str | os.PathLike | None = None) -> CompiledModel:
    """Compile one eval-mode block as a module of its own: NHWC input (``example_input``),
    outputs ``(out,)`` when ``static`` (dense, no masker) else ``(out, mask)``.

    The module *donates* its input: the block updates it in place, as a block inside a
    network updates the previous block's output (``CompiledModel`` refreshes it between
    timed runs). Everything else is :func:`build`'s.
    """
    from .block_pipelines import check_pipelines
    from .frontend import import_block

    tvm_target = _checked_target(target)
    check_pipelines(pipeline)
    start = time.perf_counter()
    mod = import_block(block, example_input, pipeline, static)
    return build(mod, tvm_target, tuning_logs, expected_rate=expected_rate, dump_ir=dump_ir,
                 donate_input=True, started=start)


def build(mod, target="host", tuning_logs: str | os.PathLike | None = None, *,
          expected_rate: float = 0.5, dump_ir: str | os.PathLike | None = None,
          metadata: dict | None = None, donate_input: bool = False,
          started: float | None = None, threads: int | None = None,
          progress=None) -> CompiledModel:
    """The target step: a Relax module from a LAS frontend (``las.*`` calls and the
    ``las.model`` attribute, see ``frontend.import_torch``) compiled for ``target``.

    ``donate_input``: the module may update its input in place (see :func:`compile_block`).
    Other parameters as in :func:`compile`.
    """
    import tvm

    from .frontend import model_info
    from .las_ops import las_blocks
    from .phases import relax_pipeline
    from .schedules import check_target
    from .target import EmulatedGPU, cpu_flags_needed
    from .transform import ChooseBlockPipelines

    emulated = target if isinstance(target, EmulatedGPU) else None
    tvm_target = _checked_target(emulated.gpu if emulated else target)
    start = time.perf_counter() if started is None else started
    info = model_info(mod)
    tuning_log, schedules = _open_tuning_log(False if emulated else tuning_logs, tvm_target)
    with tvm.transform.PassContext(opt_level=3):
        mod = ChooseBlockPipelines(tvm_target, expected_rate)(mod)
        chosen = {op.name: op.pipeline for op in las_blocks(mod)}
        if emulated:  # the GPU's schedules run serially on this CPU (tests, the fuzzer)
            from .phases import emulation_pipeline
            from .target import host_target

            host = host_target()
            passes = emulation_pipeline(tvm_target, host, expected_rate, donate_input,
                                        Path(dump_ir) if dump_ir is not None else None)
            executable = tvm.compile(mod, host, relax_pipeline=passes)
            tvm_target = host
            schedules = f"{emulated} (serial emulation of its GPU schedules)"
        else:
            passes = relax_pipeline(tvm_target, tuning_log,
                                    Path(dump_ir) if dump_ir is not None else None,
                                    expected_rate, donate_input, progress)
            executable = tvm.compile(mod, tvm_target, relax_pipeline=passes,
                                     tir_pipeline=check_target(tvm_target).tir_pipeline(
                                         tvm_target))
    if tuning_log is not None:
        schedules += (f": {len(tuning_log.tuned)} kernels tuned, {len(tuning_log.untuned)} "
                      f"on untuned rules")
        unused = tuning_log.unused_workloads()
        if unused:
            schedules += f"; {unused} logged kernels this model does not have, ignored"
        for note in tuning_log.notes:
            warnings.warn(f"tuning log {tuning_log.path}: {note}", stacklevel=2)
    family = check_target(tvm_target)  # the host's, for an emulated GPU
    blocks = [{"name": b["name"], "S": b["S"], "stride": b["stride"],
               "pipeline": "static" if b["static"] else chosen[b["name"]],
               **{k: b[k] for k in ("in_hw", "out_hw") if k in b}}
              for b in info["blocks"]]
    meta = {
        **{k: v for k, v in info.items() if k != "blocks"},
        "blocks": blocks,
        "target": str(tvm_target),
        "target_kind": tvm_target.kind.name,
        "device": family.runtime_device,  # what loading it needs
        "cpu_flags": cpu_flags_needed(tvm_target),
        "tuning_logs": str(tuning_log.path) if tuning_log is not None else None,
        "schedules": schedules,
        "expected_rate": expected_rate,
        "donates_input": donate_input,
        "compile_seconds": round(time.perf_counter() - start, 2),
        "versions": _versions(),
        **(metadata or {}),
    }
    # the export puts the kernels' device binary (if the family has one) into the library
    packer = family.device_code_packer(tvm_target)
    return CompiledModel(executable, meta, threads=threads, device_code_packer=packer)
