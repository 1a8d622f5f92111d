"""The ``las`` command line: one module per subcommand, argument parsing and printing only;
the work is in the library. Bad input ends with one ``las: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import bench, deploy, export_onnx, predict, reference, run, tune, viz
from . import compile as compile_command

SUBCOMMANDS = (reference, compile_command, export_onnx, run, bench, deploy, predict, tune, viz)


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="las", description="Compiler for latency-aware spatially dynamic networks.")
    parser.add_argument("--version", action="version", version=f"las-compiler {__version__}")
    sub = parser.add_subparsers(dest="command")
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # torch.export's pytree emits a FutureWarning about its own internals on every export
    warnings.filterwarnings("ignore", category=FutureWarning, module="copyreg")
    parser = build_parser()
    if not argv:
        argv = ["compile"]  # the main job: the default LAS-ResNet-50 for this CPU
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        parser.exit(2, f"las: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
