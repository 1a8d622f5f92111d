"""PyTorch -> Relax: export with ``las::*`` custom ops, convert to namespaced ``las.*`` calls."""

from .convert import CUSTOM_CONVERT_MAP, LAS_OPS, import_exported_program, las_op_name
from .export import ExportableLASResNet, export_las_resnet

__all__ = [
    "CUSTOM_CONVERT_MAP",
    "LAS_OPS",
    "ExportableLASResNet",
    "export_las_resnet",
    "import_exported_program",
    "las_op_name",
]
