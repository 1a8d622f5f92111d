"""las-compiler: a TVM compiler backend for latency-aware spatial-wise dynamic networks.

Importing this package is cheap: TVM is imported only by the modules that compile.
"""

__version__ = "0.1.0"
