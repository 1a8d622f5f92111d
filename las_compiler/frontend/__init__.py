"""PyTorch -> Relax: export with one ``las::sparse_bottleneck`` op per dynamic block, convert
to ``las.*`` calls (see :mod:`las_compiler.las_ops`). The frontend step of the compiler."""

from .convert import (
    CUSTOM_CONVERT_MAP,
    MODEL_INFO,
    import_block,
    import_exported_program,
    import_torch,
    model_info,
)
from .export import ExportableBlock, ExportableLASResNet, export_block, export_las_resnet

__all__ = [
    "CUSTOM_CONVERT_MAP",
    "MODEL_INFO",
    "ExportableBlock",
    "ExportableLASResNet",
    "export_block",
    "export_las_resnet",
    "import_block",
    "import_exported_program",
    "import_torch",
    "model_info",
]
