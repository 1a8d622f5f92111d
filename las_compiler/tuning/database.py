"""Tuning logs: stock meta_schedule ``JSONDatabase`` directories, one per target.

``open_log`` checks the two JSON-lines files before TVM reads them, all of it before any
build: every line is JSON, every workload decodes to a module, every record names a workload
the log has and decodes against it. A last line cut short (a tuner killed while appending -
the in-flight record) is dropped, the file rewritten atomically, and the repair reported; any
other bad line is an error naming the file and the line, so a corrupt log never half-loads
and never reaches TVM's internals.

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


def _read_lines(path: Path, notes: list[str]) -> list[tuple[int, object]]:
    """(line number, parsed JSON) of a JSON-lines file; a truncated last line is dropped (the
    file rewritten without it, and ``notes`` told)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    good = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            good.append((number, json.loads(line)))
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                notes.append(f"{path}: dropped line {number}, a record a killed tuner left "
                             "half-written")
                break
            raise TuningLogError(f"corrupt tuning log {path}: line {number} is not JSON") from None
    if len(good) != sum(1 for line in lines if line.strip()):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write("".join(lines[n - 1] + "\n" for n, _ in good))
        os.replace(tmp, path)
    return good


def _check_content(path: Path, workload_lines, record_lines) -> None:
    """Every workload decodes to a module with a ``main`` PrimFunc, every record points at a
    workload of the log and decodes against it (TVM would otherwise fail inside C++ checks,
    or with ``std::bad_alloc``, after minutes of work)."""
    workloads = []
    for number, line in workload_lines:
        try:
            workload = ms.database.Workload.from_json(line)
            if not isinstance(workload.mod["main"], tvm.tirx.PrimFunc):
                raise TypeError("main is not a PrimFunc")
        except Exception as err:  # noqa: BLE001 - TVM raises several types for bad content
            raise TuningLogError(f"corrupt tuning log {path / WORKLOADS}: line {number} is not "
                                 f"a workload module ({_first_line(err)})") from None
        workloads.append(workload)
    for number, line in record_lines:
        if not (isinstance(line, list) and len(line) == 2 and isinstance(line[0], int)):
            raise TuningLogError(f"corrupt tuning log {path / RECORDS}: line {number} is not a "
                                 "[workload index, record] pair")
        if not 0 <= line[0] < len(workloads):
            raise TuningLogError(f"corrupt tuning log {path / RECORDS}: line {number} points at "
                                 f"workload {line[0]}; the log has {len(workloads)} workloads")
        try:
            ms.database.TuningRecord.from_json(line[1], workloads[line[0]])
        except Exception as err:  # noqa: BLE001
            raise TuningLogError(f"corrupt tuning log {path / RECORDS}: line {number} is not a "
                                 f"tuning record of workload {line[0]} ({_first_line(err)})"
                                 ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def open_log(directory: str | os.PathLike, create: bool = False,
             notes: list[str] | None = None) -> ms.database.JSONDatabase:
    """The JSONDatabase in ``directory``, checked (see the module docstring); repairs are
    appended to ``notes``."""
    path = Path(directory)
    notes = [] if notes is None else notes
    if not create and not (path / WORKLOADS).is_file():
        raise TuningLogError(f"tuning log directory {path} must hold {WORKLOADS} and {RECORDS} "
                             f"(a meta_schedule JSONDatabase)")
    path.mkdir(parents=True, exist_ok=True)
    workloads = _read_lines(path / WORKLOADS, notes)
    records = _read_lines(path / RECORDS, notes)
    _check_content(path, workloads, records)
    try:
        db = ms.database.JSONDatabase(str(path / WORKLOADS), str(path / RECORDS),
                                      allow_missing=create)
    except Exception as err:  # noqa: BLE001 - TVM raises several types for bad content
        raise TuningLogError(f"corrupt tuning log in {path}: {_first_line(err)}") from None
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
    """A tuning-log directory opened for compiling: best knobs per kernel.

    ``tuned`` / ``untuned`` name the kernels of the compiled model that found a record and
    those that did not; ``notes`` says what was repaired or ignored (records of kernels the
    model does not have, records whose knobs the rule no longer offers, foreign traces)."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory)
        self.notes: list[str] = []
        self.db = open_log(directory, notes=self.notes)
        self._by_kind: dict[str, list] | None = None
        self._used: set[int] = set()  # structural hashes of the workloads records served
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
            except Exception:  # noqa: BLE001 - shapes of another variant (TVM check failures)
                continue
            if tvm_ffi.structural_equal(normalize(candidate), record.workload.mod):
                return record
        return None

    def best_knobs(self, func: tvm.tirx.PrimFunc) -> dict | None:
        """The knob values (``{name: value}``) of the best record for ``func``, or None (no
        record, or one whose trace is not one of our design spaces: noted)."""
        record = self.best_record(func)
        if record is None:
            return None
        self._used.add(tvm_ffi.structural_hash(record.workload.mod))
        try:
            return knobs_from_trace(record.trace)
        except ValueError:
            self.notes.append(f"{kernel_kind(func)}: its record is not a las-compiler "
                              "design-space trace (ignored)")
            return None

    def unused_workloads(self) -> int:
        """Logged kernels (with a measured record) that no kernel of this compile matched."""
        logged = {key for kind in self._records_by_kind().values() for key in
                  (tvm_ffi.structural_hash(r.workload.mod) for r in kind)}
        return len(logged - self._used)


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
