"""Latency predictor: ``latency = g(hardware, layer, S, r) = l_data + l_compute`` for the
kernels las-compiler emits, used to pick S per stage and to steer tuning. Pure Python + numpy:
predicting needs no TVM build (calibration does, see :mod:`las_compiler.hardware_calibration`)."""

from ..block_pipelines import PIPELINES
from .block import BlockPrediction, best_pipeline, predict_block
from .hardware import Hardware, HardwareError, MemoryLevel, load_hardware
from .layers import CANDIDATE_S, BlockLayer, network_blocks
from .profiles import BUILTIN_NAMES, get_hardware, host_profile

__all__ = ["BUILTIN_NAMES", "CANDIDATE_S", "PIPELINES", "BlockLayer", "BlockPrediction",
           "Hardware", "HardwareError", "MemoryLevel", "best_pipeline", "get_hardware",
           "host_profile", "load_hardware", "network_blocks", "predict_block"]
