"""``las_compiler.compile``: a LAS-ResNet and a target in, a runnable, exportable module out.

    model (eval) --torch.export--> ExportedProgram with las::* ops
                 --frontend------> Relax with las.* calls
                 --pipeline------> Relax VM executable (our kernels + rules)

The number of active patches is decided at run time by each block's masker; batch size and
input resolution are fixed per compile (the example input's shape).
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .deploy import artifact

_RESNET_DEPTHS = {(3, 4, 6, 3): "las_resnet50", (3, 4, 23, 3): "las_resnet101"}


def _model_name(model) -> str:
    return _RESNET_DEPTHS.get(tuple(model.stage_depths), f"las_resnet{model.stage_depths}")


def _versions() -> dict:
    import torch
    import tvm

    return {"las_compiler": __version__, "tvm": tvm.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


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


def compile(  # noqa: A001 - the public name the design asks for
    model,
    example_input,
    target="host",
    tuning_logs: str | os.PathLike | None = None,
    *,
    pipelines: str | Sequence[str] = "auto",
    static_blocks: Collection[int] = (),
    dump_ir: str | os.PathLike | None = None,
    metadata: dict | None = None,
) -> CompiledModel:
    """Compile an eval-mode LAS-ResNet for ``target``.

    Parameters
    ----------
    model
        A :class:`~las_compiler.models.LASResNet` in eval mode (weights are baked in).
    example_input
        A tensor (N, 3, H, W): fixes batch size and resolution of the compiled module.
    target
        ``"host"``, a TVM tag, a target dict or JSON (see :func:`target.resolve_target`).
    tuning_logs
        A tuning-log directory (a meta_schedule JSONDatabase written by ``las tune``); its
        best knobs replace the rules' defaults for the kernels it covers. None: the log of
        this target under ``tuning_logs/`` if there is one; False: none.
    pipelines
        Kernel pipeline per dynamic block ("fused", "halo", "dense"), one for all, or "auto"
        (:func:`las_compiler.transform.auto_pipeline` per block).
    static_blocks
        Indices of blocks compiled as dense blocks (no masker, every pixel computed).
    dump_ir
        Directory for the IR after each pipeline phase.
    metadata
        Extra fields for the artifact's metadata (e.g. the calibration rate).
    """
    import torch
    import tvm

    from .frontend import export_las_resnet, import_exported_program
    from .pipeline import relax_pipeline
    from .target import resolve_target
    from .transform import auto_pipeline

    tvm_target = resolve_target(target)
    static = set(static_blocks)
    dynamic = [b for i, b in enumerate(model.dynamic_blocks()) if i not in static]
    if isinstance(pipelines, str):
        pipelines = [auto_pipeline(b.granularity) if pipelines == "auto" else pipelines
                     for b in dynamic]
    elif len(pipelines) != len(dynamic):
        raise ValueError(f"{len(pipelines)} block pipelines given for {len(dynamic)} dynamic "
                         "blocks")
    if not isinstance(example_input, torch.Tensor):
        example_input = torch.as_tensor(np.asarray(example_input))
    start = time.perf_counter()
    program = export_las_resnet(model, example_input, static_blocks)
    mod = import_exported_program(program)
    tuning_log, schedules = _open_tuning_log(tuning_logs, tvm_target)
    passes = relax_pipeline(tvm_target, pipelines, tuning_log,
                            Path(dump_ir) if dump_ir is not None else None)
    with tvm.transform.PassContext(opt_level=3):
        executable = tvm.compile(mod, tvm_target, relax_pipeline=passes)
    if tuning_log is not None:
        schedules += (f": {len(tuning_log.tuned)} kernels tuned, {len(tuning_log.untuned)} "
                      f"on untuned rules")
    seconds = time.perf_counter() - start
    blocks = list(model.dynamic_blocks())
    dynamic_pipelines = iter(pipelines)
    meta = {
        "model": _model_name(model),
        "snet": model.granularity_spec,
        "granularity": model.granularity,
        "blocks": [{"name": b.block_name, "S": b.granularity, "stride": b.stride,
                    "pipeline": "static" if i in static else next(dynamic_pipelines)}
                   for i, b in enumerate(blocks)],
        "num_classes": model.num_classes,
        "input": {"shape": list(example_input.shape), "dtype": "float32", "layout": "NCHW"},
        "outputs": ["logits"] + [f"mask:{b.block_name}" for i, b in enumerate(blocks)
                                 if i not in static],
        "target": str(tvm_target),
        "target_kind": tvm_target.kind.name,
        "tuning_logs": str(tuning_log.path) if tuning_log is not None else None,
        "schedules": schedules,
        "compile_seconds": round(seconds, 2),
        "versions": _versions(),
        **(metadata or {}),
    }
    return CompiledModel(executable, meta)


class CompiledModel:
    """A compiled LAS network: run it, time it, export it.

    ``run(x)`` returns logits; ``run_with_masks(x)`` also returns each dynamic block's patch
    mask (bool, (N, gh, gw)). Inputs are checked against the compiled shape.
    """

    def __init__(self, module, metadata: dict, artifact_dir: Path | None = None):
        self.metadata = metadata
        self._module = module
        self._artifact_dir = artifact_dir
        self._vm = None

    # -- running ----------------------------------------------------------------------------
    @property
    def runnable(self) -> bool:
        return self.metadata["target_kind"] == "llvm" and _same_machine(self.metadata["target"])

    def _machine(self):
        if self._vm is None:
            if not self.runnable:
                raise RuntimeError(f"this module was compiled for {self.metadata['target']}; "
                                   "it cannot run on this machine (deploy it to the device)")
            import tvm

            self.device = tvm.cpu()
            self._vm = tvm.runtime.vm.VirtualMachine(self._module, self.device)
        return self._vm

    def _input(self, x):
        import tvm

        spec = self.metadata["input"]
        array = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if list(array.shape) != list(spec["shape"]):
            raise ValueError(f"input shape {tuple(array.shape)} does not match the compiled "
                             f"shape {tuple(spec['shape'])} (NCHW); recompile for other sizes")
        if array.dtype != np.float32:
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"input dtype {array.dtype} is not floating point; the model "
                                "takes float32 images")
            array = array.astype(np.float32)
        return tvm.runtime.tensor(np.ascontiguousarray(array), self.device)

    def run_with_masks(self, x) -> tuple[np.ndarray, list[np.ndarray]]:
        vm = self._machine()
        outputs = vm["main"](self._input(x))
        return outputs[0].numpy(), [m.numpy() for m in list(outputs)[1:]]

    def run(self, x) -> np.ndarray:
        return self.run_with_masks(x)[0]

    def benchmark(self, x=None, repeat: int = 30, number: int = 1, warmup: int = 3) -> dict:
        """Latency of one forward pass (ms): median, mean, min, max over ``repeat`` runs."""
        vm = self._machine()
        if x is None:
            x = np.random.default_rng(0).standard_normal(self.metadata["input"]["shape"])
        data = self._input(x)
        for _ in range(warmup):
            vm["main"](data)
        timer = vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        runs = np.array(timer(data).results) * 1e3
        return {"median_ms": float(np.median(runs)), "mean_ms": float(runs.mean()),
                "min_ms": float(runs.min()), "max_ms": float(runs.max()), "runs": len(runs)}

    def profile(self, x=None, runs: int = 10) -> dict[str, float]:
        """Milliseconds per forward pass spent in each kernel / VM builtin (mean over ``runs``),
        from the Relax VM's instrument hook. Per-call overhead of the hook (~10 us) is included,
        so the sum exceeds :meth:`benchmark`'s latency a little."""
        import time

        vm = self._machine()
        if x is None:
            x = np.random.default_rng(0).standard_normal(self.metadata["input"]["shape"])
        data = self._input(x)
        totals: dict[str, float] = {}
        started: list[float] = []

        def instrument(_func, name, before_run, _ret, *_args):
            if before_run:
                started.append(time.perf_counter())
            else:
                totals[name] = totals.get(name, 0.0) + time.perf_counter() - started.pop()
            return 0

        vm["main"](data)  # warm-up, uninstrumented
        vm.set_instrument(instrument)
        try:
            for _ in range(runs):
                vm["main"](data)
        finally:
            vm.set_instrument(lambda *_args: 0)
        return {name: seconds * 1e3 / runs for name, seconds in
                sorted(totals.items(), key=lambda item: -item[1])}

    # -- artifacts --------------------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> Path:
        """Write the artifact directory (library + metadata) atomically; returns its path."""
        if self._artifact_dir is not None:  # loaded from disk: the library file as it is
            library = _CopiedLibrary(Path(self._artifact_dir) / artifact.LIBRARY_FILE)
            metadata = {k: v for k, v in self.metadata.items() if k != "format"}
            return artifact.write_artifact(path, library, metadata)
        linker = artifact.cross_linker(self.metadata["target"])
        return artifact.write_artifact(path, self._module, self.metadata, linker)


class _CopiedLibrary:
    """``export_library`` of an already linked library: a file copy."""

    def __init__(self, path: Path):
        self.path = path

    def export_library(self, dest: str) -> None:
        shutil.copyfile(self.path, dest)


def _same_machine(target_text: str) -> bool:
    """Whether code for this target runs here (same target triple as this machine)."""
    from .target import host_target, resolve_target

    target = resolve_target(target_text)  # the JSON text str(Target) gives
    host = host_target()
    triple = str(target.attrs.get("mtriple", "")) or str(host.attrs.get("mtriple", ""))
    return triple == str(host.attrs.get("mtriple", ""))


def load(path: str | os.PathLike) -> CompiledModel:
    """Load an exported artifact (needs only the TVM runtime, not torch or the compiler)."""
    module, metadata = artifact.load_artifact(path)
    return CompiledModel(module, metadata, artifact_dir=Path(path))
