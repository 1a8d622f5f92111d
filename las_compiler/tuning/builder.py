"""A meta_schedule builder whose worker processes serve a whole tuning run.

meta_schedule's ``LocalBuilder`` starts a fresh pool of worker processes for every batch of
candidates, because long-lived workers leak memory. Each new worker imports TVM and torch
(about 5 s of CPU on a 2-core VM), and our batches are small: 8 candidates of kernels that
build in well under a second each. So the restarts cost more than the builds. This builder
keeps one pool for the run and retires each worker after ``uses_per_worker`` builds. That
bounds the leak as the restarts did, at a fraction of the imports. Results and error texts are
``LocalBuilder``'s; only the pool's lifetime differs.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, LocalBuilder
from tvm.s_tir.meta_schedule.builder import local_builder as _stock
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind


@derived_object
class PooledBuilder(LocalBuilder._cls):
    """``LocalBuilder`` with one worker pool for its lifetime; :meth:`close` ends it."""

    def __init__(self, *, f_build: str, initializer: Callable[[], None] | None,
                 max_workers: int, timeout_sec: float, uses_per_worker: int = 32) -> None:
        self.pool = PopenPoolExecutor(max_workers=max_workers, timeout=timeout_sec,
                                      initializer=initializer,
                                      maximum_process_uses=uses_per_worker)
        super().__init__(max_workers=max_workers, timeout_sec=timeout_sec, f_build=f_build,
                         initializer=initializer)  # checks f_build on a worker of self.pool

    def _sanity_check(self) -> None:
        def check(f_build, f_export) -> None:
            _stock.get_global_func_with_default_on_worker(name=f_build, default=None)
            _stock.get_global_func_with_default_on_worker(name=f_export, default=None)

        self.pool.submit(check, self.f_build, self.f_export).result()

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        jobs = [(self.f_build, self.f_export, b.mod, b.target,
                 _stock._serialize_params(b.params)) for b in build_inputs]
        results = []
        for outcome in self.pool.map_with_error_catching(lambda job: _stock._worker_func(*job),
                                                         jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(
                    None, f"LocalBuilder: Timeout, killed after {self.timeout_sec} seconds"))
            else:
                results.append(BuilderResult(
                    None, "LocalBuilder: An exception occurred\n" + str(outcome.value)))
        return results

    def close(self) -> None:
        """Stop the workers (also when the builder is collected)."""
        self.pool.shutdown()
