"""Training support: the sparsity loss and a minimal fine-tuning loop.

The loss follows the official LASNet ``SparsityCriterion_gradually``: a FLOPs term pulls the
network's sparse/dense MAC ratio to a target t, and per-block bounds keep every block's
activation inside a corridor. The corridor starts closed at t (every block is pushed to the
target rate first) and opens to [0.15, 0.9] over the first third of training (cosine
schedule), after which blocks may specialise as long as the network meets its FLOPs target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .las_resnet import LASResNet, NetworkStats


class SparsityLoss(nn.Module):
    """FLOPs-target loss with annealed per-block activation bounds.

    Parameters
    ----------
    target
        Target FLOPs ratio t (sparse MACs / dense MACs of the whole network).
    total_epochs
        Length of training; the bounds tighten over the first third.
    dilation_margin
        Penalise blocks whose dilated activation exceeds their activation by more than this
        (scattered masks waste conv1 work on halos).
    """

    def __init__(self, target: float, total_epochs: float, dilation_margin: float = 0.2):
        super().__init__()
        if not 0.0 < target <= 1.0:
            raise ValueError(f"FLOPs target must lie in (0, 1], got {target}")
        self.target = target
        self.total_epochs = total_epochs
        self.dilation_margin = dilation_margin

    def bounds(self, epoch: float) -> tuple[float, float]:
        """(lower, upper) activation bounds per block at this (fractional) epoch."""
        progress = min(max(epoch / (self.total_epochs / 3), 0.0), 1.0)
        p = math.cos(progress * math.pi / 2) ** 2  # 1 at the start (closed), 0 after a third
        upper = 0.9 - p * (0.9 - self.target)
        lower = p * (self.target - 0.15) + 0.15
        # For targets outside [0.15, 0.9] the official formulas cross; keep it a corridor.
        return min(lower, upper), max(lower, upper)

    def forward(self, stats: NetworkStats, epoch: float) -> torch.Tensor:
        lower, upper = self.bounds(epoch)
        block_terms = [
            F.relu(b.dilated_activation - upper) ** 2
            + F.relu(lower - b.activation) ** 2
            + F.relu(b.dilated_activation - b.activation - self.dilation_margin) ** 2
            for b in stats.blocks
        ]
        bounds_loss = torch.stack(block_terms).mean()
        flops_loss = (stats.sparse_flops / stats.dense_flops - self.target) ** 2
        return bounds_loss + flops_loss


@dataclass
class FinetuneConfig:
    """Knobs of :func:`finetune`. The masker learns faster than the pretrained backbone."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    masker_lr_mult: float = 10.0
    flops_target: float = 0.5
    sparsity_weight: float = 10.0
    temperature: tuple[float, float] = (5.0, 0.1)  # Gumbel temperature, annealed start->end
    max_steps: int | None = None
    device: str = "cpu"


@dataclass
class FinetuneHistory:
    """Per-step records of a fine-tuning run."""

    loss: list[float] = field(default_factory=list)
    task_loss: list[float] = field(default_factory=list)
    flops_ratio: list[float] = field(default_factory=list)
    activation: list[list[float]] = field(default_factory=list)


def finetune(
    model: LASResNet,
    dataset: Dataset,
    config: FinetuneConfig | None = None,
    task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    on_step: Callable[[int, FinetuneHistory], None] | None = None,
) -> FinetuneHistory:
    """Fine-tune a LAS network on any ``(image, label)`` dataset towards a FLOPs target.

    Task loss + ``sparsity_weight`` x :class:`SparsityLoss`; Gumbel temperature annealed
    exponentially over the run; SGD with momentum, masker parameters at a higher LR.
    """
    cfg = config or FinetuneConfig()
    model.to(cfg.device).train()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=False)
    steps_per_epoch = max(len(loader), 1)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    masker = [p for n, p in model.named_parameters() if ".masker." in n]
    backbone = [p for n, p in model.named_parameters() if ".masker." not in n]
    optimizer = torch.optim.SGD(
        [{"params": backbone, "lr": cfg.lr}, {"params": masker, "lr": cfg.lr * cfg.masker_lr_mult}],
        momentum=0.9,
        weight_decay=1e-4,
    )
    criterion = SparsityLoss(cfg.flops_target, cfg.epochs)
    history = FinetuneHistory()
    t_start, t_end = cfg.temperature
    step = 0
    while step < total:
        for images, labels in loader:
            if step >= total:
                break
            images, labels = images.to(cfg.device), labels.to(cfg.device)
            temperature = t_start * (t_end / t_start) ** (step / max(total - 1, 1))
            logits, stats = model.forward_with_stats(images, temperature)
            task = task_loss(logits, labels)
            loss = task + cfg.sparsity_weight * criterion(stats, step / steps_per_epoch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.loss.append(float(loss.detach()))
            history.task_loss.append(float(task.detach()))
            history.flops_ratio.append(stats.flops_ratio)
            history.activation.append([float(b.activation.detach()) for b in stats.blocks])
            step += 1
            if on_step is not None:
                on_step(step, history)
    model.eval()
    return history
