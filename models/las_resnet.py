"""LAS-ResNet: torchvision's ResNet with every residual block spatially dynamic.

Module and state_dict names are torchvision's (``conv1, bn1, layerX.Y.conv1..bn3,
layerX.0.downsample.0/1, fc``) plus ``layerX.Y.masker.conv2`` as in the official LASNet code, so
dense torchvision checkpoints and official LASNet checkpoints both load (see checkpoint.py).

With ``out_stages`` the network is a detection backbone (the official ``ResNet_sd`` of the
LASNet mmdetection code): no classifier, and ``forward`` returns the feature maps of the chosen
stages (C2..C5 for stages 1..4), at any input size. Its state_dict is the ``backbone.`` part
of an mmdetection checkpoint.
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
    out_stages
        None: a classifier (``forward`` returns logits). Stage numbers 1..4: a backbone whose
        ``forward`` returns those stages' outputs (C2..C5), without average pool and fc.
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
        out_stages: Sequence[int] | None = None,
    ):
        super().__init__()
        self.stage_depths = list(stage_depths)
        per_block = parse_granularity(granularity, self.stage_depths)
        self.in_channels = in_channels
        if out_stages is not None:
            stages = sorted(set(out_stages))
            if not stages or not set(stages) <= set(range(1, len(self.stage_depths) + 1)):
                raise ValueError(f"out_stages {list(out_stages)} must name stages 1.."
                                 f"{len(self.stage_depths)} (C2..C{len(self.stage_depths) + 1})")
            out_stages = tuple(stages)
        self.out_stages = out_stages
        self.num_classes = None if out_stages is not None else num_classes

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
        if out_stages is None:
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
    def is_backbone(self) -> bool:
        return self.out_stages is not None

    @property
    def output_names(self) -> list[str]:
        """``["logits"]``, or the feature maps a backbone returns (``C2`` .. ``C5``)."""
        if self.out_stages is None:
            return ["logits"]
        return [f"C{stage + 1}" for stage in self.out_stages]

    @property
    def granularity(self) -> list[int]:
        """S of each block, in execution order."""
        return [b.granularity for b in self.dynamic_blocks()]

    @property
    def granularity_spec(self) -> str:
        return format_granularity(self.granularity, self.stage_depths)

    def block_sizes(self, height: int, width: int) -> list[tuple[tuple[int, int],
                                                                  tuple[int, int]]]:
        """((input H, W), (output H, W)) of every block for an image of height x width."""
        h, w = after_stem(height), after_stem(width)
        sizes = []
        for block in self.dynamic_blocks():
            out = block.output_size(h, w)
            sizes.append(((h, w), out))
            h, w = out
        return sizes

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

    def head(self, stage_outputs: Sequence[torch.Tensor]):
        """The network's output from what :meth:`body` returned: logits, or a backbone's
        tuple of feature maps."""
        if self.out_stages is None:
            return self.fc(torch.flatten(self.avgpool(stage_outputs[-1]), 1))
        return tuple(stage_outputs)

    def body(self, x: torch.Tensor, run_block: Callable | None = None) -> list[torch.Tensor]:
        """Stem and blocks; returns the outputs of the stages the head needs (the last one,
        or a backbone's ``out_stages``). ``run_block(index, block, h)`` runs each block
        (default ``block(h)``): the sparse reference, the exporter and statistics change how
        blocks run, never the network around them."""
        wanted = self.out_stages or (len(self.stage_depths),)
        h, outputs, index = self.stem(x), [], 0
        for stage in range(1, len(self.stage_depths) + 1):
            for block in getattr(self, f"layer{stage}"):
                h = block(h) if run_block is None else run_block(index, block, h)
                index += 1
            if stage in wanted:
                outputs.append(h)
        return outputs

    # -- execution ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, temperature: float = 1.0):
        return self.head(self.body(x, lambda _i, block, h: block(h, temperature)))

    def forward_with_stats(
        self, x: torch.Tensor, temperature: float = 1.0
    ) -> tuple[torch.Tensor, NetworkStats]:
        """The output (logits or features) plus per-block masks, activation rates and
        dense/sparse MACs."""
        stats = []

        def run(_index, block, h):
            out, block_stats = block.forward_with_stats(h, temperature)
            stats.append(block_stats)
            return out

        outputs = self.body(x, run)
        stem_flops = self._stem_flops(x.shape[2:])
        dense = stem_flops + sum(s.dense_flops for s in stats)
        sparse = sum((s.sparse_flops for s in stats), x.new_tensor(stem_flops))
        if self.out_stages is None:
            head_flops = float(outputs[-1].shape[1] + self.fc.in_features * self.fc.out_features)
            dense, sparse = dense + head_flops, sparse + head_flops
        return self.head(outputs), NetworkStats(stats, dense, sparse)

    def _stem_flops(self, in_hw) -> float:
        """Stem MACs as the official code counts them: 7x7 conv plus 3x3 max-pool reads."""
        conv_h = (in_hw[0] + 2 * 3 - 7) // 2 + 1
        conv_w = (in_hw[1] + 2 * 3 - 7) // 2 + 1
        pooled = ((conv_h - 1) // 2 + 1) * ((conv_w - 1) // 2 + 1)
        conv = self.in_channels * self.conv1.out_channels * 49 * conv_h * conv_w
        return float(conv + self.conv1.out_channels * pooled * 9)


def after_stem(size: int) -> int:
    """Map size after the stem (7x7/2 conv, 3x3/2 max-pool) of a ResNet."""
    conv = (size + 2 * 3 - 7) // 2 + 1  # 7x7 stride 2 pad 3
    return (conv + 2 * 1 - 3) // 2 + 1  # 3x3 max-pool stride 2 pad 1


STAGE_DEPTHS = {"las_resnet50": (3, 4, 6, 3), "las_resnet101": (3, 4, 23, 3)}


def las_resnet50(granularity: GranularitySpec = DEFAULT_GRANULARITY, **kwargs) -> LASResNet:
    """LAS-ResNet-50 (bottleneck, 3-4-6-3 blocks)."""
    return LASResNet(STAGE_DEPTHS["las_resnet50"], granularity, **kwargs)


def las_resnet101(granularity: GranularitySpec = DEFAULT_GRANULARITY, **kwargs) -> LASResNet:
    """LAS-ResNet-101 (bottleneck, 3-4-23-3 blocks)."""
    return LASResNet(STAGE_DEPTHS["las_resnet101"], granularity, **kwargs)


def model_name(model: LASResNet) -> str:
    """The architecture's name (``las_resnet50``), from its stage depths."""
    for name, depths in STAGE_DEPTHS.items():
        if tuple(model.stage_depths) == depths:
            return name
    return "las_resnet-" + "-".join(map(str, model.stage_depths))


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
