"""LAS-ResNet: torchvision's ResNet with every residual block spatially dynamic.

Module and state_dict names are torchvision's (``conv1, bn1, layerX.Y.conv1..bn3,
layerX.0.downsample.0/1, fc``) plus ``layerX.Y.masker.conv2`` as in the official LASNet code, so
dense torchvision checkpoints and official LASNet checkpoints both load (see checkpoint.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import BlockStats, Bottleneck, DynamicBlock
from .granularity import GranularitySpec, format_granularity, parse_granularity

# Released LASNet configurations use these S_net values; 4-4-2-1 is the paper's default.
DEFAULT_GRANULARITY = "4-4-2-1"


@dataclass
class NetworkStats:
    """Per-block statistics and whole-network MACs for one batch."""

    blocks: list[BlockStats]
    dense_flops: float
    sparse_flops: torch.Tensor

    @property
    def flops_ratio(self) -> float:
        return float(self.sparse_flops.detach()) / self.dense_flops


class LASResNet(nn.Module):
    """A ResNet whose residual blocks each skip inactive SxS patches.

    Parameters
    ----------
    stage_depths
        Blocks per stage: ``[3, 4, 6, 3]`` (ResNet-50), ``[3, 4, 23, 3]`` (ResNet-101).
    granularity
        S per stage or per block (see :func:`parse_granularity`), e.g. ``"4-4-2-1"``.
    num_classes
        Classifier outputs.
    base_channels
        Channels of the stem and of the first stage's 3x3 conv (64 in ResNet; smaller values
        give the same architecture at a fraction of the cost, which tests use).
    block
        The dynamic block class; only :class:`Bottleneck` exists today.
    """

    def __init__(
        self,
        stage_depths: Sequence[int] = (3, 4, 6, 3),
        granularity: GranularitySpec = DEFAULT_GRANULARITY,
        num_classes: int = 1000,
        base_channels: int = 64,
        block: type[DynamicBlock] = Bottleneck,
        in_channels: int = 3,
        mask_channel_group: int = 1,
    ):
        super().__init__()
        self.stage_depths = list(stage_depths)
        per_block = parse_granularity(granularity, self.stage_depths)
        self.in_channels = in_channels
        self.num_classes = num_classes

        stem = base_channels
        self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        channels, index = stem, 0
        for stage, depth in enumerate(self.stage_depths):
            planes = base_channels * 2**stage
            blocks = []
            for j in range(depth):
                stride = 2 if (stage > 0 and j == 0) else 1
                blocks.append(block(channels, planes, stride, per_block[index],
                                    base_width=64, mask_channel_group=mask_channel_group))
                channels = planes * block.expansion
                index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)

        for name, module in self.named_modules():
            if isinstance(module, DynamicBlock):
                module.block_name = name
            if isinstance(module, nn.Conv2d) and "masker" not in name:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    # -- structure ---------------------------------------------------------------------
    def dynamic_blocks(self) -> Iterator[DynamicBlock]:
        """The residual blocks in execution order."""
        for stage in range(len(self.stage_depths)):
            yield from getattr(self, f"layer{stage + 1}")

    @property
    def granularity(self) -> list[int]:
        """S of each block, in execution order."""
        return [b.granularity for b in self.dynamic_blocks()]

    @property
    def granularity_spec(self) -> str:
        return format_granularity(self.granularity, self.stage_depths)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"expected an image batch of shape (N, {self.in_channels}, H, W), got {shape}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point image batch, got dtype {x.dtype}")

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))

    # -- execution ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        x = self.stem(x)
        for block in self.dynamic_blocks():
            x = block(x, temperature)
        return self.head(x)

    def forward_with_stats(
        self, x: torch.Tensor, temperature: float = 1.0
    ) -> tuple[torch.Tensor, NetworkStats]:
        """Logits plus per-block masks, activation rates and dense/sparse MACs."""
        in_hw = x.shape[2:]
        h = self.stem(x)
        stem_flops = self._stem_flops(in_hw, h)
        dense, sparse, stats = stem_flops, h.new_tensor(stem_flops), []
        for block in self.dynamic_blocks():
            h, block_stats = block.forward_with_stats(h, temperature)
            stats.append(block_stats)
            dense += block_stats.dense_flops
            sparse = sparse + block_stats.sparse_flops
        logits = self.head(h)
        head_flops = float(h.shape[1] + self.fc.in_features * self.fc.out_features)
        return logits, NetworkStats(stats, dense + head_flops, sparse + head_flops)

    def _stem_flops(self, in_hw, pooled: torch.Tensor) -> float:
        """Stem MACs as the official code counts them: 7x7 conv plus 3x3 max-pool reads."""
        conv_h = (in_hw[0] + 2 * 3 - 7) // 2 + 1
        conv_w = (in_hw[1] + 2 * 3 - 7) // 2 + 1
        conv = self.in_channels * self.conv1.out_channels * 49 * conv_h * conv_w
        return float(conv + pooled.shape[1] * pooled.shape[2] * pooled.shape[3] * 9)


STAGE_DEPTHS = {"las_resnet50": (3, 4, 6, 3), "las_resnet101": (3, 4, 23, 3)}


def las_resnet50(granularity: GranularitySpec = DEFAULT_GRANULARITY, **kwargs) -> LASResNet:
    """LAS-ResNet-50 (bottleneck, 3-4-6-3 blocks)."""
    return LASResNet(STAGE_DEPTHS["las_resnet50"], granularity, **kwargs)


def las_resnet101(granularity: GranularitySpec = DEFAULT_GRANULARITY, **kwargs) -> LASResNet:
    """LAS-ResNet-101 (bottleneck, 3-4-23-3 blocks)."""
    return LASResNet(STAGE_DEPTHS["las_resnet101"], granularity, **kwargs)


MODELS: dict[str, Callable[..., LASResNet]] = {
    "las_resnet50": las_resnet50,
    "las_resnet101": las_resnet101,
}


def build_model(
    name: str, granularity: GranularitySpec = DEFAULT_GRANULARITY, **kwargs
) -> LASResNet:
    """Build a model by name; unknown names get the list of known ones."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name](granularity, **kwargs)
