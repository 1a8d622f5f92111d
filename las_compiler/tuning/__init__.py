"""Autotuning of our kernels' knobs with meta_schedule (see :mod:`.tune`), tuning logs
(stock JSONDatabases, :mod:`.database`), and where the compiler finds them."""

from __future__ import annotations

from pathlib import Path

from .database import TuningLog, TuningLogError, open_log

REPO_LOGS = Path(__file__).resolve().parents[2] / "tuning_logs"


def log_name(target) -> str:
    """The tuning-log folder name of a target: kind and CPU (``llvm-znver4``) or arch."""
    attrs = target.attrs
    cpu = attrs.get("mcpu") or attrs.get("arch") or "generic"
    return f"{target.kind.name}-{cpu}"


def default_log_dir(target) -> Path | None:
    """``tuning_logs/<log_name>`` of this checkout (or the working directory), if present."""
    for root in (REPO_LOGS, Path.cwd() / "tuning_logs"):
        path = root / log_name(target)
        if (path / "database_workload.json").is_file():
            return path
    return None


__all__ = ["REPO_LOGS", "TuningLog", "TuningLogError", "default_log_dir", "log_name",
           "open_log"]
