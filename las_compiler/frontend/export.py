"""torch.export of a LAS-ResNet (or of one block) with each dynamic block as one
``las::sparse_bottleneck`` custom op.

The exported network is: dense stem (conv, BN, ReLU, max-pool) -> per block the dense
downsample shortcut when the block has one, then ``las::sparse_bottleneck`` (masker and
residual branch) -> dense head (average pool, fc), or a backbone's stage outputs. Blocks
listed in ``static_blocks`` are exported as plain dense PyTorch ops (the dense baseline, or
layers where sparse execution does not pay). Each block's pipeline choice and name travel in
its op call.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import nn

from ..models import Bottleneck, LASResNet
from . import torch_ops  # noqa: F401  (registers torch.ops.las.*)


def _bn_args(bn: nn.BatchNorm2d) -> list[torch.Tensor]:
    return [bn.weight, bn.bias, bn.running_mean, bn.running_var]


def las_block_call(block: Bottleneck, x: torch.Tensor, pipeline: str = "auto"):
    """``(out, mask)`` of one dynamic block through the ``las::sparse_bottleneck`` op."""
    conv = block.masker.conv2
    return torch.ops.las.sparse_bottleneck(
        x, block.identity(x), conv.weight, conv.bias,
        block.conv1.weight, *_bn_args(block.bn1),
        block.conv2.weight, *_bn_args(block.bn2),
        block.conv3.weight, *_bn_args(block.bn3),
        block.granularity, block.stride, block.bn1.eps, pipeline, block.block_name)


def _checked_pipelines(pipelines: str | Sequence[str], count: int) -> list[str]:
    if isinstance(pipelines, str):
        return [pipelines] * count
    pipelines = list(pipelines)
    if len(pipelines) != count:
        raise ValueError(f"{len(pipelines)} block pipelines given for {count} dynamic blocks")
    return pipelines


class ExportableLASResNet(nn.Module):
    """Export view of an eval-mode :class:`LASResNet` (shares its parameters).

    ``forward(x)`` returns ``(logits, mask_0, ..., mask_k)`` (a backbone: its feature maps,
    then the masks): the patch mask of every dynamic block, so a compiled model can be checked
    mask by mask against PyTorch. ``pipelines``: one
    kernel pipeline for every dynamic block or one per dynamic block (see
    :mod:`las_compiler.block_pipelines`).
    """

    def __init__(self, model: LASResNet, static_blocks: Collection[int] = (),
                 pipelines: str | Sequence[str] = "auto"):
        super().__init__()
        if model.training:
            raise ValueError("export needs an eval-mode model (model.eval()): BN must be frozen")
        self.model = model
        blocks = list(model.dynamic_blocks())
        for block in blocks:
            if not isinstance(block, Bottleneck):
                raise TypeError(f"no las op for block type {type(block).__name__}")
        unknown = sorted(set(static_blocks) - set(range(len(blocks))))
        if unknown:
            raise ValueError(f"static_blocks {unknown} out of range: the model has "
                             f"{len(blocks)} blocks")
        self.static_blocks = frozenset(static_blocks)
        dynamic = [i for i in range(len(blocks)) if i not in self.static_blocks]
        self.pipelines = dict(zip(dynamic, _checked_pipelines(pipelines, len(dynamic)),
                                  strict=True))

    def forward(self, x: torch.Tensor):
        masks = []

        def run(index, block, h):
            block.check_input(h)  # an S that does not fit fails here, with the block's name
            if index in self.static_blocks:
                return torch.relu(block.residual(h) + block.identity(h))
            h, mask = las_block_call(block, h, self.pipelines[index])
            masks.append(mask)
            return h

        out = self.model.head(self.model.body(x, run))
        return (*(out if self.model.is_backbone else (out,)), *masks)


class ExportableBlock(nn.Module):
    """One block as a network of its own, NHWC in and out (as blocks run inside a compiled
    network, where layout conversions cancel between blocks): ``forward(x)`` returns
    ``(out,)`` for a ``static`` (dense) block, else ``(out, mask)``."""

    def __init__(self, block: Bottleneck, pipeline: str = "auto", static: bool = False):
        super().__init__()
        if block.training:
            raise ValueError("export needs an eval-mode block (block.eval()): BN must be frozen")
        self.block, self.pipeline, self.static = block, pipeline, static

    def forward(self, x: torch.Tensor):
        h = x.permute(0, 3, 1, 2)
        self.block.check_input(h)
        if self.static:
            return (torch.relu(self.block.residual(h) + self.block.identity(h))
                    .permute(0, 2, 3, 1),)
        out, mask = las_block_call(self.block, h, self.pipeline)
        return out.permute(0, 2, 3, 1), mask


def export_las_resnet(model: LASResNet, example_input: torch.Tensor,
                      static_blocks: Collection[int] = (),
                      pipelines: str | Sequence[str] = "auto") -> torch.export.ExportedProgram:
    """``torch.export`` the eval-mode model at the example input's (static) shape."""
    model.check_input(example_input)
    wrapper = ExportableLASResNet(model, static_blocks, pipelines).eval()
    with torch.no_grad():
        return torch.export.export(wrapper, (example_input,))


def export_block(block: Bottleneck, example_input: torch.Tensor, pipeline: str = "auto",
                 static: bool = False) -> torch.export.ExportedProgram:
    """``torch.export`` one eval-mode block; ``example_input`` is NHWC."""
    if example_input.ndim != 4:
        raise ValueError(f"expected an NHWC block input, got shape {tuple(example_input.shape)}")
    with torch.no_grad():
        return torch.export.export(ExportableBlock(block, pipeline, static).eval(),
                                   (example_input,))
