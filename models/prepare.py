"""A ready-to-run model by name: built, a checkpoint loaded, maskers calibrated (seeded)."""

from __future__ import annotations

import torch

from .calibrate import calibrate
from .checkpoint import load_checkpoint
from .las_resnet import LASResNet, build_model


@torch.no_grad()
def prepare_model(model_name: str, granularity, rate: float | None,
                  input_size: tuple[int, int], batch: int = 1, checkpoint: str | None = None,
                  seed: int = 0) -> tuple[LASResNet, torch.Tensor]:
    """(eval model, example input (batch, 3, H, W)): ``build_model(model_name, granularity)``,
    ``checkpoint`` loaded, maskers calibrated to ``rate`` on random images (``None``: keep
    the checkpoint's maskers). Seeded by ``seed``."""
    torch.manual_seed(seed)
    model = build_model(model_name, granularity).eval()
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    x = torch.randn(batch, 3, *input_size)
    if rate is not None:
        calibrate(model, rate, torch.randn(max(8, batch), 3, *input_size))
    return model, x
