"""Tuning end to end on a small network: tasks, each cost model, resuming, RPC through a
local tracker, and a compile that picks the log up and still equals PyTorch."""

import time

import numpy as np
import pytest
import torch

import las_compiler
from las_compiler.compiler import _open_tuning_log
from las_compiler.frontend import ExportableLASResNet
from las_compiler.models import LASResNet, calibrate
from las_compiler.target import host_target
from las_compiler.tuning import open_log
from las_compiler.tuning.tasks import extract_tasks, lowered_module
from las_compiler.tuning.tune import _measured, format_results, tune_tasks

from ..rpc_farm import Farm, free_port


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = LASResNet((1, 1, 1, 1), "4-2-2-1", num_classes=10, base_channels=16).eval()
    x = torch.randn(1, 3, 64, 64)
    calibrate(model, 0.5, x)
    target = host_target()
    tasks = extract_tasks(lowered_module(model, x, target, "fused"), target, 0.5)
    return model, x, target, tasks


def test_tasks_cover_sparse_and_dense_kernels(small):
    _, _, _, tasks = small
    kinds = {t.kind for t in tasks}
    assert {"conv1x1", "conv2d", "gather_conv3x3", "conv1x1_scatter_add", "conv1x1_rows"} <= kinds
    assert any(t.symbolic for t in tasks) and any(not t.symbolic for t in tasks)
    assert all(t.weight >= 1 for t in tasks)


def test_cost_models_rank_design_space_candidates(small, cpu_profile):
    """Seeded ranks by the predictor from the first trial; xgb and random are stock."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from las_compiler.tuning.cost_model import SeededCostModel, make_cost_model
    from las_compiler.tuning.space import design_space

    _, _, target, tasks = small
    task = next(t for t in tasks if t.kind == "conv1x1")
    from las_compiler.tuning.tune import _without_tensor_intrinsics

    with _without_tensor_intrinsics():
        context = ms.TuneContext(mod=task.mod, target=target)
    spaces = design_space(target)(s_tir.Schedule(task.mod))
    candidates = [ms.MeasureCandidate(sch, ms.arg_info.ArgInfo.from_prim_func(
        task.mod["main"])) for sch in spaces]
    scores = SeededCostModel(cpu_profile()).predict(context, candidates)
    assert scores.shape == (len(spaces),) and np.all((scores >= 0) & (scores <= 1))
    assert isinstance(make_cost_model("xgb", cpu_profile()), ms.cost_model.XGBModel)
    assert isinstance(make_cost_model("random", cpu_profile()),
                      ms.cost_model.RandomModel)
    with pytest.raises(ValueError, match="unknown cost model 'gbdt'"):
        make_cost_model("gbdt", cpu_profile())


def test_tune_resume_and_table(small, tmp_path):
    _, _, target, tasks = small
    task = next(t for t in tasks if t.kind == "gather_conv3x3")
    cost_model = "seeded"
    results = tune_tasks([task], target, tmp_path, 3, cost_model, log=lambda _m: None)
    assert results[0].trials == 3 and results[0].best_ms > 0 and results[0].knobs is not None
    assert len(results[0].history_ms) == 3 and min(results[0].history_ms) >= results[0].best_ms
    assert results[0].untuned_ms > 0 and results[0].tuned_ms > 0 and results[0].speedup > 0
    again = tune_tasks([task], target, tmp_path, 3, cost_model, log=lambda _m: None,
                       measure_untuned=False)
    assert again[0].trials == 3  # nothing re-measured
    assert len(_measured(open_log(tmp_path), task.mod)) == 3
    assert task.name in format_results(results)


def test_compile_uses_the_log_and_stays_exact(small, tmp_path):
    model, x, target, tasks = small
    picked = [next(t for t in tasks if t.kind == kind) for kind in ("conv1x1", "gather_conv3x3")]
    tune_tasks(picked, target, tmp_path, 1, "seeded", log=lambda _m: None,
               measure_untuned=False)
    compiled = las_compiler.compile(model, x, "host", tuning_logs=tmp_path, pipelines="fused")
    tuned = int(compiled.metadata["schedules"].split(": ")[1].split(" kernels")[0])
    assert tuned >= 2  # each task's kernel (the symbolic one found via its count)
    with torch.no_grad():
        reference = ExportableLASResNet(model)(x)[0].numpy()
    np.testing.assert_allclose(compiled.run(x), reference, rtol=1e-3, atol=1e-3)
    assert _open_tuning_log(False, target) == (None, "untuned rules (tuning logs disabled)")


@pytest.mark.full_matrix  # the default tier tunes through RPC in the fault test below
def test_rpc_runner_through_a_local_tracker(small, tmp_path):
    _, _, target, tasks = small
    farm = Farm()
    port = farm.port
    try:
        task = next(t for t in tasks if t.kind == "conv1x1")
        with pytest.raises(ValueError, match="no device with key 'tx2'"):
            tune_tasks([task], target, tmp_path, 1, rpc_tracker=f"127.0.0.1:{port}",
                       rpc_key="tx2")
        results = tune_tasks([task], target, tmp_path, 1, "seeded",
                             rpc_tracker=f"127.0.0.1:{port}", rpc_key="local-board",
                             log=lambda _m: None)
        assert results[0].trials == 1 and results[0].best_ms > 0
    finally:
        farm.stop()


@pytest.mark.parametrize("victim", ["server", pytest.param("tracker",
                                                            marks=pytest.mark.full_matrix)])
def test_remote_faults_end_tuning_with_a_clear_error_and_a_valid_log(small, tmp_path, victim):
    """Tuning through a local tracker: a key no device has is one clear error; then the
    device (or the tracker) dies after the first batch, measured remotely: tuning stops
    within the RPC timeout, says why, and the log keeps the first record and opens again."""
    from las_compiler.tuning.tune import TuningError

    _, _, target, tasks = small
    task = next(t for t in tasks if t.kind == "conv1x1")
    farm = Farm()
    port = farm.port

    def log(line):
        if " 1/3 " in line:
            farm.kill(victim)

    start = time.time()
    try:
        with pytest.raises(ValueError, match="no device with key 'tx2'"):
            tune_tasks([task], target, tmp_path, 1, rpc_tracker=f"127.0.0.1:{port}",
                       rpc_key="tx2")
        with pytest.raises(TuningError, match="every candidate of the batch failed to run"):
            tune_tasks([task], target, tmp_path, 3, "seeded", rpc_tracker=f"127.0.0.1:{port}",
                       rpc_key="local-board", per_batch=1, rpc_timeout=6, log=log,
                       measure_untuned=False)
    finally:
        farm.stop()
    assert time.time() - start < 120
    assert len(_measured(open_log(tmp_path), task.mod)) == 1


def test_bad_rpc_arguments():
    from las_compiler.tuning.tune import make_runner

    with pytest.raises(ValueError, match="host:port"):
        make_runner("localhost", "board")
    with pytest.raises(ValueError, match="host:port"):
        make_runner("localhost:9190", None)
    with pytest.raises(ValueError, match="cannot reach the RPC tracker at 127.0.0.1:"):
        make_runner(f"127.0.0.1:{free_port()}", "board")
