"""las-compiler: a TVM compiler backend for latency-aware spatial-wise dynamic networks.

Importing this package is cheap: TVM is imported only by the modules that compile.
"""

from ._version import __version__


def compile(*args, **kwargs):  # noqa: A001 - lazy re-export keeps ``import las_compiler`` cheap
    """See :func:`las_compiler.compiler.compile`."""
    from .compiler import compile as _compile

    return _compile(*args, **kwargs)


def load(path, threads=None):
    """See :func:`las_compiler.deploy.load` (needs only the TVM runtime)."""
    from .deploy import load as _load

    return _load(path, threads)


def build(*args, **kwargs):
    """See :func:`las_compiler.compiler.build` (the target step, for any LAS frontend)."""
    from .compiler import build as _build

    return _build(*args, **kwargs)


def compile_onnx(*args, **kwargs):
    """See :func:`las_compiler.compiler.compile_onnx`."""
    from .compiler import compile_onnx as _compile_onnx

    return _compile_onnx(*args, **kwargs)


def export_onnx(*args, **kwargs):
    """See :func:`las_compiler.frontend.onnx.export.export_onnx`."""
    from .frontend.onnx.export import export_onnx as _export_onnx

    return _export_onnx(*args, **kwargs)


def compile_block(*args, **kwargs):
    """See :func:`las_compiler.compiler.compile_block`."""
    from .compiler import compile_block as _compile_block

    return _compile_block(*args, **kwargs)


__all__ = ["__version__", "build", "compile", "compile_block", "compile_onnx", "export_onnx",
           "load"]
