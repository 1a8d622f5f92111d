"""Tune the kernels of a model with meta_schedule, into a stock JSONDatabase.

Per task: the design space of the kernel's rule (:mod:`.space`), evolutionary search with the
knob mutator, the chosen cost model (:mod:`.cost_model`), a local or RPC runner, and the
shared database in the log directory. Resumable: a task's measured records count towards its
trials, so re-running continues where it stopped; every measured batch is appended to the
database before the next starts, and :func:`.database.open_log` drops a record a killed tuner
left half-written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ..schedules import device_of
from ..schedules.knobs import knobs_from_trace
from .builder import PooledBuilder
from .cost_model import make_cost_model
from .database import open_log
from .mutator import MutateKnob
from .space import design_space, knob_space, schedule_with_knobs
from .tasks import Task

BUILD_FUNC = "las_compiler.tuning.build"
ALLOC_FUNC = "las_compiler.tuning.alloc"
ALLOC_RPC_FUNC = "las_compiler.tuning.alloc_rpc"


def _build(mod, target, _params):
    """meta_schedule build without the stock one's ``import tvm.s_tir.tensor_intrin`` (~30 s
    here, in every fresh builder worker: the stock builder times out on every candidate)."""
    from tvm.driver import build as tvm_build

    return tvm_build(mod, target=target)


def _arguments(device, args_info, alloc_repeat):
    """Kernel arguments for timing: random floats, and *valid* indices (0, 1, 2, ... in
    every int buffer: the first cells / pixels of the map). The stock allocator fills index
    buffers with random ints, and our gather kernels then read far outside the map."""
    rng = np.random.default_rng(0)
    repeated = []
    for _ in range(alloc_repeat):
        args = []
        for info in args_info:
            _, dtype, shape = info
            size = int(np.prod(shape)) if shape else 1
            if "float" in dtype:
                data = rng.random(shape, dtype="float32").astype(dtype)
            else:
                data = np.arange(size, dtype=dtype).reshape(shape)
            arg = tvm.runtime.empty(tuple(shape), dtype, device)
            arg.copyfrom(data)
            args.append(arg)
        repeated.append(args)
    return repeated


def _arguments_rpc(_session, device, args_info, alloc_repeat):
    return _arguments(device, args_info, alloc_repeat)


def register_worker_functions() -> None:
    """Register the build and argument functions (here and in each pool worker)."""
    tvm.register_global_func(BUILD_FUNC, _build, override=True)
    tvm.register_global_func(ALLOC_FUNC, _arguments, override=True)
    tvm.register_global_func(ALLOC_RPC_FUNC, _arguments_rpc, override=True)


register_worker_functions()


def make_builder(workers: int = 2) -> PooledBuilder:
    """Builds candidates on ``workers`` processes kept for the run (close it when done)."""
    return PooledBuilder(f_build=BUILD_FUNC, initializer=register_worker_functions,
                         max_workers=workers, timeout_sec=120)


class TuningError(RuntimeError):
    """Tuning stopped (every candidate of a batch failed, e.g. a remote device gone); the
    log keeps every record measured so far, and re-running resumes."""


def make_runner(rpc_tracker: str | None = None, rpc_key: str | None = None,
                workers: int = 1, timeout: float = 60.0):
    """A local runner, or one that measures through an RPC tracker: every wait for the
    tracker, a server or a remote run is bounded by ``timeout`` seconds."""
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=3, min_repeat_ms=20,
                                          enable_cpu_cache_flush=False)
    if rpc_tracker is None:
        return ms.runner.LocalRunner(timeout_sec=60, evaluator_config=evaluator,
                                     f_alloc_argument=ALLOC_FUNC,
                                     initializer=register_worker_functions)
    from ..deploy.remote import check_tracker

    host, _, port = rpc_tracker.rpartition(":")
    if not host or not port.isdigit() or not rpc_key:
        raise ValueError(f"--rpc-tracker must be host:port and --rpc-key given, got "
                         f"{rpc_tracker!r} / {rpc_key!r}")
    check_tracker(host, int(port), rpc_key)
    config = ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port),
                                 tracker_key=rpc_key, session_timeout_sec=int(timeout))
    runner = ms.runner.RPCRunner(rpc_config=config, evaluator_config=evaluator,
                                 f_alloc_argument=ALLOC_RPC_FUNC,
                                 initializer=register_worker_functions, max_workers=workers)
    # meta_schedule makes the runner's worker pool without a timeout: a job waiting for a
    # server the tracker no longer has (a crashed board) or for a tracker that went away
    # waits forever. A bounded pool kills such a worker and reports the run as timed out.
    from tvm.support.popen_pool import PopenPoolExecutor

    runner.pool = PopenPoolExecutor(max_workers=workers, timeout=timeout,
                                    initializer=register_worker_functions)
    return runner


def _quiet_meta_schedule_console() -> None:
    """meta_schedule sets up its loggers on every ``tune_tir`` call: its console handler takes
    the logger's level at that moment (WARNING here: progress is ours, the full log still goes
    to ``<log>/.work/<task>/logs``), and an unnamed handler from an earlier call breaks its
    config templating (``None.format``)."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    logger.setLevel(logging.WARNING)
    for handler in list(logger.handlers):
        if handler.get_name() is None:
            logger.removeHandler(handler)


@contextlib.contextmanager
def _without_tensor_intrinsics():
    """``TuneContext()`` imports ``tvm.s_tir.tensor_intrin``, which parses hundreds of
    TVMScript intrinsics (GPU MMA, ARM dot products): 79 s in a process that has imported
    torch (every prim_func decorator walks ``inspect.stack``). Our design spaces use none, so
    an empty stand-in is installed for the duration, and removed after (a real import later
    still works)."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if sys.modules.get(name) is not None and not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


@dataclass
class TaskResult:
    name: str
    kind: str
    weight: int
    trials: int
    best_ms: float | None  # the runner's measurement (local or remote)
    untuned_ms: float | None  # rule defaults, measured here
    tuned_ms: float | None  # the best knobs, measured here the same way
    knobs: object
    history_ms: list[float] | None = None  # this run's measurements, in order
    history_knobs: list | None = None  # the knobs of each of them

    @property
    def speedup(self) -> float | None:
        if self.tuned_ms and self.untuned_ms:
            return self.untuned_ms / self.tuned_ms
        return None


def _measured(db, mod) -> list[float]:
    """Mean seconds of every measured record of a workload (best first: JSONDatabase keeps
    records sorted by latency; the order of measurement is :attr:`TaskResult.history_ms`)."""
    if not db.has_workload(mod):
        return []
    records = db.get_top_k(db.commit_workload(mod), 1 << 20)
    return [float(np.mean([float(s) for s in r.run_secs])) for r in records if r.run_secs]


@derived_object
class _Progress(ms.measure_callback.PyMeasureCallback):
    """Per measured batch: the task's progress (a tqdm bar with elapsed time and ETA when
    ``bar``, else one log line), failed candidates, and a stop when a whole batch failed in
    the runner (the remote device or tracker is gone: waiting on would only time out again)."""

    def __init__(self, label: str, total: int, done: int, log: Callable[[str], None],
                 bar: bool = False):
        super().__init__()
        self.label, self.total, self.done, self.log = label, total, done, log
        self.best = math.inf
        self.history: list[float] = []  # mean seconds per candidate, in measurement order
        self.knobs: list[dict] = []  # the knobs of each entry of history
        self.stopped: str | None = None  # why tuning must stop
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=min(done, total), desc=label, unit="trial",
                            file=sys.stderr, leave=True, dynamic_ncols=True)

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
              runner_results) -> None:
        failed = []
        for cand, build, result in zip(measure_candidates, builder_results, runner_results,
                                       strict=True):
            self.done += 1
            if result.run_secs:
                seconds = float(np.mean([float(s) for s in result.run_secs]))
                self.best = min(self.best, seconds)
                self.history.append(seconds)
                self.knobs.append(knobs_from_trace(cand.sch.trace))
            error = build.error_msg or result.error_msg
            if error:
                line = str(error).strip().splitlines()[-1] if str(error).strip() else "error"
                self.log(f"{self.label} candidate failed: {line}")
                if not build.error_msg:
                    failed.append(line)
        best = f"{self.best * 1e3:.3f} ms" if math.isfinite(self.best) else "-"
        if self.bar is not None:
            self.bar.update(min(self.done, self.total) - self.bar.n)
            self.bar.set_postfix_str(f"best {best}")
        else:
            self.log(f"{self.label} {min(self.done, self.total)}/{self.total} best {best}")
        if failed and len(failed) == len(measure_candidates):
            self.stopped = (f"{self.label}: every candidate of the batch failed to run "
                            f"({failed[-1]})")
            raise TuningError(self.stopped)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _stopping(progress: _Progress):
    """A stop raised inside the measure callback comes out of meta_schedule's C++ scheduler as
    an FFI error; give it back its own type and message."""
    try:
        yield
    except TuningError:
        progress.close()
        raise
    except Exception:
        progress.close()
        if progress.stopped is not None:
            raise TuningError(f"{progress.stopped}; the tuning log keeps what was measured: "
                              "re-run to resume") from None
        raise


def untuned_ms(task: Task, target, repeats: int = 20) -> float:
    """Latency of the rule's default knobs, measured locally (time_evaluator)."""
    from ..schedules import schedule

    func = schedule(task.mod["main"], target)
    return _time_local(func, target, repeats)


def tuned_ms(task: Task, target, knobs, repeats: int = 20) -> float:
    return _time_local(schedule_with_knobs(task.mod["main"], target, knobs), target, repeats)


def _time_local(func, target, repeats: int) -> float:
    """Median milliseconds of a scheduled kernel here, on the runner's kind of arguments."""
    module = tvm.compile(tvm.IRModule({"main": func}), target=target).jit()
    dev = device_of(target)
    info = [["TENSOR", str(p.dtype), [int(d) for d in p.shape]] for p in func.params]
    args = _arguments(dev, info, 1)[0]
    timer = module.time_evaluator("main", dev, number=3, repeat=repeats)
    return float(np.median(timer(*args).results)) * 1e3


def tune_tasks(tasks: Sequence[Task], target, log_dir: str | os.PathLike, trials: int,
               cost_model: str = "seeded", hardware=None, rpc_tracker: str | None = None,
               rpc_key: str | None = None, seed: int = 0, per_batch: int = 8,
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
               measure_untuned: bool = True, rpc_timeout: float = 60.0,
               bar: bool = False) -> list[TaskResult]:
    """Tune every task to ``trials`` measured candidates (counting earlier runs).

    ``rpc_timeout`` bounds every remote wait; a batch whose every candidate failed to run
    stops tuning with :class:`TuningError` (the log stays valid; re-run to resume). ``bar``:
    a tqdm progress bar (elapsed, ETA) per task instead of log lines."""
    from ..schedules import check_target

    # the profile of the board the target names, not this CPU's
    hardware = hardware or check_target(target).hardware(target)
    db = open_log(log_dir, create=True)
    # RPC arguments are checked here, before any work; worker processes start only when a
    # task has trials left to measure
    runner = make_runner(rpc_tracker, rpc_key, timeout=rpc_timeout) if rpc_tracker else None
    builder = None
    results = []
    with contextlib.ExitStack() as workers:
        for index, task in enumerate(tasks, start=1):
            label = f"[{index}/{len(tasks)} {task.name}]"
            done = len(_measured(db, task.mod))
            space = knob_space(task.mod["main"], target)
            budget = min(trials, space.size)  # a small space is exhausted, not re-sampled
            progress = _Progress(label, budget, done, log, bar)
            if done < budget:
                if builder is None:
                    builder = workers.enter_context(contextlib.closing(make_builder()))
                    runner = runner or make_runner(timeout=rpc_timeout)
                work_dir = Path(log_dir) / ".work" / task.name
                _quiet_meta_schedule_console()
                with _without_tensor_intrinsics(), _stopping(progress):
                    ms.tir_integration.tune_tir(
                        task.mod, target, str(work_dir), max_trials_global=budget - done,
                        num_trials_per_iter=per_batch, builder=builder, runner=runner, database=db,
                        cost_model=make_cost_model(cost_model, hardware),
                        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                           progress],
                        space=ms.space_generator.ScheduleFn(
                            design_space(target), sch_rules=[], postprocs=[],
                            mutator_probs={MutateKnob(seed): 1.0}),
                        strategy=ms.search_strategy.EvolutionarySearch(
                            population_size=max(16, 2 * space.size),
                            init_min_unmeasured=space.size, genetic_num_iters=2),
                        num_tuning_cores=2, seed=seed, task_scheduler="round-robin")
            else:
                log(f"{label} {done} trials in the log: done")
            progress.close()
            measured = _measured(db, task.mod)
            best_record = db.get_top_k(db.commit_workload(task.mod), 1) if measured else []
            knobs = knobs_from_trace(best_record[0].trace) if best_record else None
            local = measure_untuned and rpc_tracker is None and knobs is not None
            results.append(TaskResult(
                task.name, task.kind, task.weight, len(measured),
                min(measured) * 1e3 if measured else None,
                untuned_ms(task, target) if local else None,
                tuned_ms(task, target, knobs) if local else None, knobs,
                [t * 1e3 for t in progress.history], list(progress.knobs)))
    return results


def format_knobs(knobs: dict) -> str:
    """``pixels=12 channel-outer``: the knob values of a record, booleans by name."""
    return " ".join(f"{name}={value}" if name == "pixels" else name.replace("_", "-")
                    for name, value in sorted(knobs.items(), key=lambda kv: kv[0] != "pixels")
                    if name == "pixels" or value)


def format_results(results: Sequence[TaskResult]) -> str:
    lines = [f"{'task':<28}{'calls':>6}{'trials':>8}{'best ms':>10}{'untuned ms':>12}"
             f"{'speedup':>9}  knobs   (best: the runner; untuned/speedup: re-measured here)"]
    for r in results:
        best = f"{r.best_ms:.3f}" if r.best_ms else "-"
        untuned = f"{r.untuned_ms:.3f}" if r.untuned_ms else "-"
        speedup = f"{r.speedup:.2f}x" if r.speedup else "-"
        knobs = format_knobs(r.knobs) if r.knobs else "-"
        lines.append(f"{r.name:<28}{r.weight:>6}{r.trials:>8}{best:>10}{untuned:>12}"
                     f"{speedup:>9}  {knobs}")
    return "\n".join(lines)


def tune_model(model, example_input, target, trials: int, log_dir=None,
               cost_model: str = "seeded", rate: float = 0.5, rpc_tracker: str | None = None,
               rpc_key: str | None = None, seed: int = 0,
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
               rpc_timeout: float = 60.0, bar: bool = False
               ) -> tuple[list[TaskResult], Path]:
    """Tune every tunable kernel of an eval-mode LAS model for ``target`` into ``log_dir``
    (default ``tuning_logs/<target name>/``); kernels with a symbolic patch count are tuned at
    ``rate`` x their largest count. Returns (per-task results, the log directory)."""
    from . import REPO_LOGS, log_name
    from .cost_model import COST_MODELS
    from .tasks import extract_tasks, lowered_module

    if cost_model not in COST_MODELS:
        raise ValueError(f"unknown cost model {cost_model!r}; choose from {COST_MODELS}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if "cpu" not in target.keys:
        raise ValueError(f"tuning needs a CPU target here (no GPU on this machine); got "
                         f"{target.kind.name}")
    tasks = extract_tasks(lowered_module(model, example_input, target, expected_rate=rate),
                          target, rate)
    log(f"{len(tasks)} tunable kernels ({target})")
    directory = Path(log_dir) if log_dir else REPO_LOGS / log_name(target)
    results = tune_tasks(tasks, target, directory, trials, cost_model, rpc_tracker=rpc_tracker,
                         rpc_key=rpc_key, seed=seed, log=log, rpc_timeout=rpc_timeout, bar=bar)
    return results, directory
