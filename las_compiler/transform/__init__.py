"""Relax passes of the LAS compile pipeline, one per file (ordered in ``phases.py``)."""

from .apply_schedule_rules import ApplyScheduleRules
from .cancel_transpose_pairs import CancelTransposePairs
from .choose_block_pipelines import ChooseBlockPipelines
from .fold_batch_norm import FoldBatchNorm
from .fold_constants_on_host import FoldConstantsOnHost
from .lower_dense_conv import LowerDenseConv
from .lower_las_ops import LowerLASOps
from .uniform_no_alias import UniformNoAlias

__all__ = ["ApplyScheduleRules", "CancelTransposePairs", "ChooseBlockPipelines",
           "FoldBatchNorm", "FoldConstantsOnHost", "LowerDenseConv", "LowerLASOps",
           "UniformNoAlias"]
