"""las-compiler: a TVM compiler backend for latency-aware spatial-wise dynamic networks.

Importing this package is cheap: TVM is imported only by the modules that compile.
"""

__version__ = "0.1.0"


def compile(*args, **kwargs):  # noqa: A001 - lazy re-export keeps ``import las_compiler`` cheap
    """See :func:`las_compiler.compiler.compile`."""
    from .compiler import compile as _compile

    return _compile(*args, **kwargs)


def load(path):
    """See :func:`las_compiler.compiler.load`."""
    from .compiler import load as _load

    return _load(path)
