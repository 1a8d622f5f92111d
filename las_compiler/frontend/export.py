"""torch.export of a LAS-ResNet with its dynamic blocks as ``las::*`` custom ops.

The exported graph is: dense stem (conv, BN, ReLU, max-pool) -> per block ``las::masker``,
the dense downsample shortcut when the block has one, ``las::sparse_bottleneck`` -> dense head
(average pool, fc). Blocks listed in ``static_blocks`` are exported as plain dense PyTorch ops
(the dense baseline, or layers where sparse execution does not pay).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from ..models import Bottleneck, LASResNet
from . import torch_ops  # noqa: F401  (registers torch.ops.las.*)


def _bn_args(bn: nn.BatchNorm2d) -> list[torch.Tensor]:
    return [bn.weight, bn.bias, bn.running_mean, bn.running_var]


class ExportableLASResNet(nn.Module):
    """Export view of an eval-mode :class:`LASResNet` (shares its parameters).

    ``forward(x)`` returns ``(logits, mask_0, ..., mask_k)``: the patch mask of every dynamic
    block, so a compiled model can be checked mask by mask against PyTorch.
    """

    def __init__(self, model: LASResNet, static_blocks: Collection[int] = ()):
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

    def forward(self, x: torch.Tensor):
        model = self.model
        h = model.stem(x)
        masks = []
        for index, block in enumerate(model.dynamic_blocks()):
            block.check_input(h)  # an S that does not fit fails here, with the block's name
            if index in self.static_blocks:
                h = torch.relu(block.residual(h) + block.identity(h))
                continue
            conv = block.masker.conv2
            mask = torch.ops.las.masker(h, conv.weight, conv.bias, block.granularity,
                                        block.stride)
            identity = block.identity(h)
            h = torch.ops.las.sparse_bottleneck(
                h, identity, mask,
                block.conv1.weight, *_bn_args(block.bn1),
                block.conv2.weight, *_bn_args(block.bn2),
                block.conv3.weight, *_bn_args(block.bn3),
                block.granularity, block.stride, block.bn1.eps,
            )
            masks.append(mask)
        return (model.head(h), *masks)


def export_las_resnet(model: LASResNet, example_input: torch.Tensor,
                      static_blocks: Collection[int] = ()) -> torch.export.ExportedProgram:
    """``torch.export`` the eval-mode model at the example input's (static) shape."""
    model.check_input(example_input)
    wrapper = ExportableLASResNet(model, static_blocks).eval()
    with torch.no_grad():
        return torch.export.export(wrapper, (example_input,))
