"""Relax passes of the LAS compile pipeline, one per file (ordered in ``pipeline.py``)."""

from .apply_schedule_rules import ApplyScheduleRules
from .cancel_transpose_pairs import CancelTransposePairs
from .lower_dense_conv import LowerDenseConv
from .lower_las_ops import PIPELINES, LowerLASOps, auto_pipeline

__all__ = ["PIPELINES", "ApplyScheduleRules", "CancelTransposePairs", "LowerDenseConv",
           "LowerLASOps", "auto_pipeline"]
