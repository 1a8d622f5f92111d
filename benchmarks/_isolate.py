"""Run one benchmark function in a fresh Python process, and a small timing helper.

Frameworks that own thread pools (PyTorch's OpenMP threads, TVM's pool, ONNX Runtime's
intra-op pool) slow each other down 10-20x when they share a process: idle workers of one keep
spinning on the cores the other needs. Every measurement therefore runs in its own interpreter,
started here with the thread counts set in its environment *before* it imports anything.

``run_isolated("package.module:function", {"arg": value}, timeout)`` starts
``python -c ...`` with the repository root on ``PYTHONPATH``, passes the keyword arguments as a
pickle file, and returns the function's (picklable) result. An exception in the child is raised
again in the parent with the child's traceback attached as its ``__cause__``; a crash or a
timeout raises :class:`IsolatedError`.

Isolation does not protect against *other* processes: another job using the 2 cores makes a
2-thread measurement 3-20x slower. :class:`ForeignLoad` measures how many cores other processes
used during a window (from ``/proc/stat``, Linux), :func:`timed_runs` reports it, and
:func:`wait_for_idle` waits for a quiet machine before a measurement starts.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = 2
MAX_FOREIGN_CORES = 0.25  # other processes' CPU use above which a timing is disturbed
_TAIL_CHARS = 4000


class IsolatedError(RuntimeError):
    """The child process crashed, timed out, or raised an exception that could not be sent."""


class IsolatedTimeout(IsolatedError, TimeoutError):
    """The child process ran longer than its timeout and was killed."""


class RemoteTraceback(Exception):
    """The child's formatted traceback, attached as ``__cause__`` of a re-raised exception."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def resolve(fn_qualname: str) -> Callable[..., Any]:
    """``"pkg.mod:func"`` (or ``"pkg.mod.func"``) -> the module-level function."""
    module_name, sep, attr = fn_qualname.partition(":")
    if not sep:
        module_name, _, attr = fn_qualname.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{fn_qualname!r} is not 'module:function' or 'module.function'")
    fn = importlib.import_module(module_name)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise TypeError(f"{fn_qualname} is not callable")
    return fn


def child_env(threads: int = DEFAULT_THREADS) -> dict[str, str]:
    """The child's environment: ours, thread counts pinned, the repository importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["TVM_NUM_THREADS"] = str(threads)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def run_isolated(
    fn_qualname: str,
    kwargs: dict[str, Any] | None = None,
    timeout: float = 600.0,
    *,
    threads: int = DEFAULT_THREADS,
) -> Any:
    """Call ``fn_qualname(**kwargs)`` in a fresh spawned interpreter and return its result.

    The child gets ``OMP_NUM_THREADS`` and ``TVM_NUM_THREADS`` set to ``threads`` before it
    imports anything. Its stdout/stderr are captured (and quoted in errors). Raises the child's
    own exception (with its traceback as ``__cause__``) if the function raised, and
    :class:`IsolatedError` if the process died, sent nothing, or exceeded ``timeout`` seconds
    (:class:`IsolatedTimeout`; the child is killed).
    """
    with tempfile.TemporaryDirectory(prefix="las-isolate-") as tmp:
        request, reply = Path(tmp, "request.pkl"), Path(tmp, "reply.pkl")
        request.write_bytes(pickle.dumps((fn_qualname, dict(kwargs or {}))))
        cmd = [
            sys.executable,
            "-c",
            "import sys; from benchmarks._isolate import _child_main; "
            "_child_main(sys.argv[1], sys.argv[2])",
            str(request),
            str(reply),
        ]
        try:
            proc = subprocess.run(
                cmd,
                env=child_env(threads),
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise IsolatedTimeout(
                f"{fn_qualname} did not finish within {timeout:g} s (child killed)"
                + _tail(exc.stderr)
            ) from None
        if not reply.exists():
            code = proc.returncode
            how = f"exited with code {code}"
            if code < 0:
                with contextlib.suppress(ValueError):
                    how += f" (killed by {signal.Signals(-code).name})"
            raise IsolatedError(
                f"{fn_qualname}: child process {how} without a result" + _tail(proc.stderr)
            )
        status = pickle.loads(reply.read_bytes())
    if status["ok"]:
        return status["value"]
    where = f"raised in an isolated child process running {fn_qualname}"
    try:
        exc = pickle.loads(status["exception"]) if status["exception"] else None
    except Exception:  # the exception's class is not importable here
        exc = None
    if exc is None:
        raise IsolatedError(
            f"{status['type']}: {status['message']} ({where})\n\n"
            f"Child traceback:\n{status['traceback']}"
        )
    exc.__cause__ = RemoteTraceback(status["traceback"])
    if hasattr(exc, "add_note"):
        exc.add_note(where)
    raise exc


def _tail(text: str | bytes | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text[-_TAIL_CHARS:]
    return "\n--- child stderr (tail) ---\n" + text


def _child_main(request_path: str, reply_path: str) -> None:
    """Entry point of the child: run the function and write the reply pickle."""
    fn_qualname, kwargs = pickle.loads(Path(request_path).read_bytes())
    try:
        status = {"ok": True, "value": resolve(fn_qualname)(**kwargs)}
        payload = pickle.dumps(status)
    except BaseException as exc:  # everything, even SystemExit, goes back to the parent
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            exc.__traceback__ = exc.__cause__ = exc.__context__ = None
            sendable = pickle.dumps(exc)
            pickle.loads(sendable)  # some exceptions pickle but cannot be rebuilt
        except Exception:
            sendable = None
        status = {
            "ok": False,
            "exception": sendable,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc),
            "traceback": text,
        }
        payload = pickle.dumps(status)
    tmp = Path(reply_path + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, reply_path)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            rest = f.read().rpartition(")")[2].split()
        # user nice system [idle iowait] irq softirq steal; own utime + stime (all threads)
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], int(rest[11]) + int(rest[12])
    except (OSError, ValueError, IndexError):
        return None


class ForeignLoad:
    """Context manager: CPU cores used by *other* processes (and steal) during the block.

    ``cores`` is set on exit: machine-wide busy time minus this process's own CPU time, per
    second of wall time (clock-tick resolution, so +-0.05 cores on a 0.5 s window); None if
    ``/proc`` is unavailable.
    """

    cores: float | None = None

    def __enter__(self) -> ForeignLoad:
        self._start, self._ticks = time.perf_counter(), _cpu_ticks()
        return self

    def __exit__(self, *exc) -> None:
        wall, ticks = time.perf_counter() - self._start, _cpu_ticks()
        if self._ticks is None or ticks is None or wall <= 0:
            self.cores = None
            return
        busy, own = ticks[0] - self._ticks[0], ticks[1] - self._ticks[1]
        self.cores = max(0.0, (busy - own) / os.sysconf("SC_CLK_TCK") / wall)


def wait_for_idle(max_cores: float = 0.25, sample_s: float = 0.5,
                  timeout: float = 10.0) -> float | None:
    """Sample other processes' CPU use until it is at most ``max_cores`` or ``timeout`` passes.

    Returns the last sample (None without ``/proc``); the caller decides what a busy machine
    means (measure anyway and flag the result, or give up).
    """
    deadline = time.perf_counter() + timeout
    while True:
        with ForeignLoad() as load:
            time.sleep(sample_s)
        if load.cores is None or load.cores <= max_cores or time.perf_counter() >= deadline:
            return load.cores


def timed_runs(fn: Callable[[], Any], repeats: int = 20, warmup_s: float = 0.3) -> dict:
    """Time ``fn()`` ``repeats`` times with ``time.perf_counter``.

    Before the timed batch, ``fn`` is called untimed once and then again until ``warmup_s``
    seconds have passed, so thread pools that went to sleep during an idle gap (setup, export,
    compilation) are awake and the CPU clock has ramped up. Returns
    ``{"median_ms", "min_ms", "runs", "foreign_cores"}``; the last is the CPU other processes
    used during warm-up and timing (see :class:`ForeignLoad`): well above 0 means the numbers
    are not trustworthy.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    with ForeignLoad() as load:
        fn()
        deadline = time.perf_counter() + warmup_s
        while time.perf_counter() < deadline:
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeats,
            "foreign_cores": load.cores}


def quiet_timing(measure: Callable[[], dict], retries: int = 2,
                 max_foreign_cores: float = MAX_FOREIGN_CORES) -> dict:
    """Run ``measure()`` (a dict with ``median_ms`` and ``foreign_cores``) until other processes
    stayed under ``max_foreign_cores``, at most ``1 + retries`` times; keep the least disturbed
    attempt, with ``attempts`` and ``contended`` added."""
    best, attempts = None, 0
    for attempts in range(1, retries + 2):  # noqa: B007 - the count is reported
        if attempts > 1:
            wait_for_idle(max_foreign_cores, timeout=15.0)
        res = measure()
        if best is None or (res["foreign_cores"] or 0) < (best["foreign_cores"] or 0):
            best = res
        if res["foreign_cores"] is None or res["foreign_cores"] <= max_foreign_cores:
            break
    quiet = best["foreign_cores"] is None or best["foreign_cores"] <= max_foreign_cores
    return {**best, "attempts": attempts, "contended": not quiet}
