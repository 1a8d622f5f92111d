"""LAS-ResNet models, the masker, training utilities and the reference sparse executor.

Plain PyTorch: nothing here imports TVM. Installed as ``las_compiler.models``.
"""

from .blocks import BlockStats, Bottleneck, DynamicBlock, randomise_bn
from .calibrate import calibrate, calibrate_block, pin_mask
from .checkpoint import (
    CheckpointInfo,
    LoadReport,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from .granularity import (
    check_granularity_fits,
    conv_output_size,
    format_granularity,
    parse_granularity,
    patch_grid,
)
from .las_resnet import (
    DEFAULT_GRANULARITY,
    MODELS,
    LASResNet,
    NetworkStats,
    build_model,
    las_resnet50,
    las_resnet101,
    model_name,
)
from .masker import Masker
from .prepare import PreparedModel, prepare_model
from .reference import sparse_block_forward, sparse_forward
from .training import FinetuneConfig, FinetuneHistory, SparsityLoss, finetune

__all__ = [
    "DEFAULT_GRANULARITY",
    "MODELS",
    "BlockStats",
    "CheckpointInfo",
    "Bottleneck",
    "DynamicBlock",
    "FinetuneConfig",
    "FinetuneHistory",
    "LASResNet",
    "LoadReport",
    "Masker",
    "NetworkStats",
    "PreparedModel",
    "SparsityLoss",
    "build_model",
    "calibrate",
    "calibrate_block",
    "pin_mask",
    "prepare_model",
    "randomise_bn",
    "check_granularity_fits",
    "conv_output_size",
    "finetune",
    "format_granularity",
    "las_resnet50",
    "las_resnet101",
    "load_checkpoint",
    "model_name",
    "parse_granularity",
    "patch_grid",
    "read_checkpoint",
    "read_state_dict",
    "sparse_block_forward",
    "sparse_forward",
]
