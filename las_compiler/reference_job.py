"""Run a LAS network through the PyTorch reference sparse executor and summarise it.

This is the main job until the compiler lands: it builds a model (random weights, calibrated
to an activation rate, or a checkpoint), checks that sparse execution equals the masked dense
forward, and reports per-block activation, the FLOPs ratio and the reference timings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .models import build_model, calibrate, load_checkpoint, sparse_forward
from .timing import median_ms


@dataclass
class BlockRow:
    name: str
    granularity: int
    stride: int
    out_hw: tuple[int, int]
    activation: float
    dilated_activation: float
    flops_ratio: float


@dataclass
class ReferenceReport:
    model: str
    granularity: str
    input_shape: tuple[int, ...]
    blocks: list[BlockRow]
    dense_gflops: float
    sparse_gflops: float
    max_abs_error: float
    dense_ms: float
    sparse_ms: float

    @property
    def flops_ratio(self) -> float:
        return self.sparse_gflops / self.dense_gflops

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_ratio": self.flops_ratio}

    def format(self) -> str:
        lines = [
            f"{self.model}  S_net={self.granularity}  input={list(self.input_shape)}",
            f"{'block':<11}{'S':>3}{'stride':>7}{'out':>9}{'active':>8}{'dilated':>9}{'FLOPs':>7}",
        ]
        for b in self.blocks:
            out = f"{b.out_hw[0]}x{b.out_hw[1]}"
            lines.append(f"{b.name:<11}{b.granularity:>3}{b.stride:>7}{out:>9}"
                         f"{b.activation:>8.3f}{b.dilated_activation:>9.3f}{b.flops_ratio:>7.3f}")
        lines += [
            f"network FLOPs (MACs): dense {self.dense_gflops:.3f} G, sparse "
            f"{self.sparse_gflops:.3f} G, ratio {self.flops_ratio:.3f}",
            f"reference sparse executor vs masked dense forward: max |diff| = "
            f"{self.max_abs_error:.2e}",
            f"PyTorch eager (median): masked dense {self.dense_ms:.1f} ms, reference sparse "
            f"{self.sparse_ms:.1f} ms (naive gather/scatter; the compiler's job is to beat dense)",
        ]
        return "\n".join(lines)


@torch.no_grad()
def prepare_model(model_name: str, granularity: str, rate: float | None,
                  input_size: tuple[int, int], batch: int, checkpoint: str | None, seed: int):
    """(eval model, example input): built by name, checkpoint loaded, maskers calibrated to
    ``rate`` on random images (``None``: keep the checkpoint's maskers). Seeded."""
    torch.manual_seed(seed)
    model = build_model(model_name, granularity).eval()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    x = torch.randn(batch, 3, *input_size)
    if rate is not None:
        calibration = torch.randn(max(8, batch), 3, *input_size)
        calibrate(model, rate, calibration)
    return model, x


@torch.no_grad()
def run_reference(
    model_name: str = "las_resnet50",
    granularity: str = "4-4-2-1",
    rate: float | None = 0.5,
    input_size: tuple[int, int] = (224, 224),
    batch: int = 1,
    checkpoint: str | None = None,
    seed: int = 0,
    repeats: int = 5,
) -> ReferenceReport:
    """Build, (calibrate,) run dense and sparse, and report. ``rate=None`` keeps the masker."""
    model, x = prepare_model(model_name, granularity, rate, input_size, batch, checkpoint, seed)
    dense_logits, stats = model.forward_with_stats(x)
    sparse_logits = sparse_forward(model, x)
    rows = []
    for s in stats.blocks:
        rows.append(BlockRow(s.name, s.granularity, s.stride, s.output_hw, float(s.activation),
                             float(s.dilated_activation), float(s.sparse_flops) / s.dense_flops))
    return ReferenceReport(
        model=model_name,
        granularity=model.granularity_spec,
        input_shape=tuple(x.shape),
        blocks=rows,
        dense_gflops=stats.dense_flops / 1e9,
        sparse_gflops=float(stats.sparse_flops) / 1e9,
        max_abs_error=float((dense_logits - sparse_logits).abs().max()),
        dense_ms=median_ms(lambda: model(x), repeats),
        sparse_ms=median_ms(lambda: sparse_forward(model, x), repeats),
    )
