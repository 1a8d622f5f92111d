"""``las reference``: run the PyTorch reference sparse executor and report per block."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

from .common import add_json, add_model_args, out_stages, subcommand


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


def reference_report(args: argparse.Namespace, repeats: int = 5) -> ReferenceReport:
    import torch

    from ..models import model_name, prepare_model, sparse_forward
    from ..timing import median_ms

    prepared = prepare_model(args.model, args.snet, args.rate, args.input_size, args.batch,
                             args.checkpoint, args.seed, out_stages(args))
    model, x = prepared.model, prepared.example
    for line in prepared.warnings:
        print(f"WARNING: {line}", file=sys.stderr, flush=True)
    with torch.no_grad():
        dense_logits, stats = model.forward_with_stats(x)
        sparse_logits = sparse_forward(model, x)
        rows = [BlockRow(s.name, s.granularity, s.stride, s.output_hw, float(s.activation),
                         float(s.dilated_activation), float(s.sparse_flops) / s.dense_flops)
                for s in stats.blocks]
        return ReferenceReport(
            model=model_name(model), granularity=model.granularity_spec, input_shape=tuple(x.shape),
            blocks=rows, dense_gflops=stats.dense_flops / 1e9,
            sparse_gflops=float(stats.sparse_flops) / 1e9,
            max_abs_error=_max_difference(dense_logits, sparse_logits),
            dense_ms=median_ms(lambda: model(x), repeats),
            sparse_ms=median_ms(lambda: sparse_forward(model, x), repeats))


def _max_difference(a, b) -> float:
    """Largest |a - b| over the output(s): logits, or a backbone's feature maps."""
    pairs = zip(a, b, strict=True) if isinstance(a, tuple) else [(a, b)]
    return max(float((x - y).abs().max()) for x, y in pairs)


def run(args: argparse.Namespace) -> int:
    report = reference_report(args)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.format())
    return 0


def register(sub) -> None:
    parser = subcommand(sub, "reference",
                        "run the PyTorch reference sparse executor and report")
    add_model_args(parser)
    add_json(parser)
    parser.set_defaults(func=run)
