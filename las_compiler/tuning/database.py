"""Tuning logs: stock meta_schedule ``JSONDatabase`` directories, one per target.

``open_log`` checks the two JSON-lines files before TVM reads them: a last line cut short
(a tuner killed while appending - the in-flight record) is dropped, and the file rewritten
atomically; any other bad line is an error naming the file and the line, so a corrupt log
never half-loads.

``TuningLog.best_knobs(func)`` finds the record for one of our kernels: by structural
equality for static kernels; for a kernel with a symbolic patch count, by specialising the
count to the value of a record's workload of the same kernel and comparing (tasks are tuned
at a representative count; see :mod:`.tasks`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from ..schedules.analysis import kernel_kind
from ..schedules.knobs import knobs_from_trace

WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"


class TuningLogError(ValueError):
    """A tuning log that is missing or corrupt."""


def _check_lines(path: Path) -> int:
    """Validate a JSON-lines file; drop a truncated last line. Returns the line count."""
    if not path.exists():
        return 0
    text = path.read_text()
    lines = text.splitlines()
    good = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                break  # the record being appended when the tuner died
            raise TuningLogError(f"corrupt tuning log {path}: line {number} is not JSON") from None
        good.append(line)
    if len(good) != sum(1 for line in lines if line.strip()):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in good))
        os.replace(tmp, path)
    return len(good)


def open_log(directory: str | os.PathLike, create: bool = False) -> ms.database.JSONDatabase:
    """The JSONDatabase in ``directory`` (checked, see the module docstring)."""
    path = Path(directory)
    if not create and not (path / WORKLOADS).is_file():
        raise TuningLogError(f"tuning log directory {path} must hold {WORKLOADS} and {RECORDS} "
                             f"(a meta_schedule JSONDatabase)")
    path.mkdir(parents=True, exist_ok=True)
    workloads = _check_lines(path / WORKLOADS)
    _check_lines(path / RECORDS)
    try:
        db = ms.database.JSONDatabase(str(path / WORKLOADS), str(path / RECORDS),
                                      allow_missing=create)
    except Exception as err:  # noqa: BLE001 - TVM raises several types for bad content
        raise TuningLogError(f"corrupt tuning log in {path}: {str(err).splitlines()[0]}") \
            from None
    if len(db) and not workloads:
        raise TuningLogError(f"tuning log in {path} has records but no workloads")
    return db


def normalize(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    """The workload module of a kernel, exactly as meta_schedule's TuneContext normalises a
    task (``main``, global symbol "main", noalias), so records are found by their hash.
    KernelTable strips global symbols in compiled modules; this puts the same one back."""
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    attrs = {k: v for k, v in (func.attrs or {}).items() if k != "global_symbol"}
    return _normalize_mod(func.with_attrs(attrs) if attrs else func)


def _symbolic_params(func: tvm.tirx.PrimFunc) -> list[int]:
    return [i for i, p in enumerate(func.params)
            if any(not isinstance(d, tvm.tirx.IntImm) for d in (getattr(p, "shape", None) or ()))]


class TuningLog:
    """A tuning-log directory opened for compiling: best knobs per kernel."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory)
        self.db = open_log(directory)
        self._by_kind: dict[str, list] | None = None
        self.tuned: list[str] = []  # kernels scheduled with a record's knobs (by the compiler)
        self.untuned: list[str] = []  # tunable kernels the log has no record for

    def _records_by_kind(self) -> dict[str, list]:
        if self._by_kind is None:
            best: dict[int, tuple] = {}
            for record in self.db.get_all_tuning_records():
                if not record.run_secs:
                    continue
                key = tvm_ffi.structural_hash(record.workload.mod)
                cost = sum(float(s) for s in record.run_secs) / len(record.run_secs)
                if key not in best or cost < best[key][0]:
                    best[key] = (cost, record)
            self._by_kind = {}
            for _, record in best.values():
                func = record.workload.mod["main"]
                self._by_kind.setdefault(kernel_kind(func) or "", []).append(record)
        return self._by_kind

    def best_record(self, func: tvm.tirx.PrimFunc):
        mod = normalize(func)
        if not _symbolic_params(func):
            records = self.db.get_top_k(self.db.commit_workload(mod), 1) \
                if self.db.has_workload(mod) else []
            return records[0] if records else None
        for record in self._records_by_kind().get(kernel_kind(func) or "", []):
            static = record.workload.mod["main"]
            if len(static.params) != len(func.params):
                continue
            try:
                candidate = specialize_counts(func, [static.params[i].shape
                                                     for i in _symbolic_params(func)])
            except (ValueError, TypeError, RuntimeError):  # shapes of another variant
                continue
            if tvm_ffi.structural_equal(normalize(candidate), record.workload.mod):
                return record
        return None

    def best_knobs(self, func: tvm.tirx.PrimFunc) -> dict | None:
        """The knob values (``{name: value}``) of the best record for ``func``, or None."""
        record = self.best_record(func)
        return knobs_from_trace(record.trace) if record is not None else None


def specialize_counts(func: tvm.tirx.PrimFunc, shapes) -> tvm.tirx.PrimFunc:
    """``func`` with its symbolic-shape parameters given these static shapes (in order)."""
    mapping = {}
    for index, shape in zip(_symbolic_params(func), shapes, strict=True):
        param = func.params[index]
        mapping[param] = tvm.tirx.decl_buffer(tuple(int(v) for v in shape), param.dtype,
                                              name=param.name)
    if not mapping:
        raise ValueError("no symbolic dimension to specialise")
    return func.specialize(mapping)
