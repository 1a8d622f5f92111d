"""``las compile``: build (or load) a LAS-ResNet, compile it, export the artifact, report.

The report says what a user deciding whether to ship the sparse model needs: per-block and
per-stage activation, the FLOPs ratio, whether the compiled module matches PyTorch (logits and
every mask), and its latency next to the same network compiled dense by us (the fastest dense
ResNet we measured on this CPU; ``las bench`` compares with ONNX Runtime and PyTorch too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .deploy.artifact import check_writable, cross_linker
from .reference_job import prepare_model
from .target import describe_target


@dataclass
class CompiledBlockRow:
    name: str
    granularity: int
    stride: int
    pipeline: str
    activation: float  # mean of the compiled module's mask on the example input
    flops_ratio: float


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
    flops_ratio: float
    max_abs_error: float | None = None
    masks_equal: bool | None = None
    mask_cells_differing: int | None = None
    las_ms: float | None = None
    dense_ms: float | None = None
    dense_compile_seconds: float | None = None
    schedules: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        lines = [f"{self.model}  S_net={self.snet}  input={list(self.input_shape)}  "
                 f"target={self.target}",
                 f"compiled in {self.compile_seconds:.1f} s -> {self.artifact}",
                 f"schedules: {self.schedules}",
                 f"{'block':<11}{'S':>3}{'stride':>7}{'pipeline':>9}{'active':>8}{'FLOPs':>7}"]
        for b in self.blocks:
            lines.append(f"{b.name:<11}{b.granularity:>3}{b.stride:>7}{b.pipeline:>9}"
                         f"{b.activation:>8.3f}{b.flops_ratio:>7.3f}")
        stages = "  ".join(f"stage {i + 1}: {a:.3f}" for i, a in enumerate(self.stage_activation))
        lines.append(f"activation per stage: {stages}")
        lines.append(f"network FLOPs ratio (sparse / dense): {self.flops_ratio:.3f}")
        if self.max_abs_error is not None:
            masks = "masks identical" if self.masks_equal else (
                f"masks differ at {self.mask_cells_differing} patch cells (logits that tie "
                "within float rounding can compare differently in TVM and PyTorch)")
            lines.append(f"compiled vs PyTorch: max |logit diff| {self.max_abs_error:.2e}, "
                         f"{masks}")
        if self.las_ms is not None:
            line = f"latency (median): LAS {self.las_ms:.2f} ms"
            if self.dense_ms is not None:
                line += (f", dense (same network, all blocks static, compiled by us) "
                         f"{self.dense_ms:.2f} ms, ratio {self.las_ms / self.dense_ms:.2f}")
            lines.append(line)
        lines += self.notes
        return "\n".join(lines)


def default_output(model_name: str, snet: str) -> Path:
    return Path("out") / f"{model_name}-{snet}"


@torch.no_grad()
def run_compile(
    model_name: str = "las_resnet50",
    granularity: str = "4-4-2-1",
    rate: float | None = 0.5,
    input_size: tuple[int, int] = (224, 224),
    batch: int = 1,
    checkpoint: str | None = None,
    seed: int = 0,
    target: str = "host",
    output: str | Path | None = None,
    tuning_logs: str | None = None,
    pipeline: str = "auto",
    compare_dense: bool = True,
    repeats: int = 30,
    dump_ir: str | None = None,
) -> CompileReport:
    """Build, compile, export, check and time; see the module docstring."""
    from . import compiler
    from .frontend import ExportableLASResNet
    from .target import resolve_target

    # fail fast, before the model is built, calibrated and compiled
    target = resolve_target(target)
    output = Path(output) if output is not None else default_output(model_name, granularity)
    check_writable(output)
    cross_linker(str(target))  # a cross target needs its linker for the export
    model, x = prepare_model(model_name, granularity, rate, input_size, batch, checkpoint, seed)
    compiled = compiler.compile(model, x, target, tuning_logs, pipelines=pipeline,
                                dump_ir=dump_ir,
                                metadata={"rate": rate, "seed": seed, "checkpoint": checkpoint})
    path = compiled.export(output)
    _, stats = model.forward_with_stats(x)
    report = CompileReport(
        model=model_name, snet=model.granularity_spec, input_shape=tuple(x.shape),
        target=describe_target(target), artifact=str(path),
        compile_seconds=compiled.metadata["compile_seconds"], blocks=[], stage_activation=[],
        flops_ratio=float(stats.sparse_flops) / stats.dense_flops,
        schedules=compiled.metadata["schedules"])
    masks = None
    if compiled.runnable:
        logits, masks = compiled.run_with_masks(x)
        reference = ExportableLASResNet(model)(x)
        report.max_abs_error = float(np.abs(logits - reference[0].numpy()).max())
        report.mask_cells_differing = int(sum(np.count_nonzero(m != r.numpy()) for m, r in
                                              zip(masks, reference[1:], strict=True)))
        report.masks_equal = report.mask_cells_differing == 0
        report.las_ms = compiled.benchmark(x, repeat=repeats)["median_ms"]
        if compare_dense:
            blocks = range(len(list(model.dynamic_blocks())))
            dense = compiler.compile(model, x, target, tuning_logs, static_blocks=blocks)
            report.dense_compile_seconds = dense.metadata["compile_seconds"]
            report.dense_ms = dense.benchmark(x, repeat=repeats)["median_ms"]
    else:
        report.notes.append(f"cross-compiled for {compiled.metadata['target_kind']}: not run "
                            "here (deploy the artifact and use `las run` / `las bench` there)")
    stage_values: dict[str, list[float]] = {}
    for index, (meta, stat) in enumerate(zip(compiled.metadata["blocks"], stats.blocks,
                                             strict=True)):
        activation = float(masks[index].mean()) if masks is not None else float(stat.activation)
        report.blocks.append(CompiledBlockRow(meta["name"], meta["S"], meta["stride"],
                                              meta["pipeline"], activation,
                                              float(stat.sparse_flops) / stat.dense_flops))
        stage_values.setdefault(meta["name"].split(".")[0], []).append(activation)
    report.stage_activation = [float(np.mean(v)) for v in stage_values.values()]
    return report
