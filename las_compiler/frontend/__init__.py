"""PyTorch -> Relax: export with one ``las::sparse_bottleneck`` op per dynamic block, convert
to ``las.*`` calls (see :mod:`las_compiler.las_ops`). The frontend step of the compiler.

The export half (:mod:`.export`) needs only torch; the conversion half (:mod:`.convert`)
needs TVM's compiler and is imported on first use, so the PyTorch reference of a compiled
network (``verify``, ``peers``) also runs where only the TVM runtime is installed.
"""

from .export import ExportableBlock, ExportableLASResNet, export_block, export_las_resnet

_CONVERT = ("CUSTOM_CONVERT_MAP", "MODEL_INFO", "import_block", "import_exported_program",
            "import_torch", "model_info")


def __getattr__(name):
    if name in _CONVERT:
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
