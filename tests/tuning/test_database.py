"""Tuning logs: crash-safe opening, clear errors, and knob lookup for static and symbolic
kernels."""

import pytest
import tvm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from las_compiler import op
from las_compiler.geometry import PatchGeometry
from las_compiler.schedules.knobs import knobs_from_trace
from las_compiler.target import host_target
from las_compiler.tuning import TuningLog, TuningLogError, open_log
from las_compiler.tuning.database import RECORDS, WORKLOADS, normalize, specialize_counts
from las_compiler.tuning.space import design_space


def _commit(db, func, target, pixels_choice: int, seconds: float):
    sch = design_space(target)(s_tir.Schedule(normalize(func)))[0]
    draw = [i for i in sch.trace.insts if i.kind.name == "SampleCategorical"][1]  # pixels
    trace = sch.trace.with_decision(draw, pixels_choice, remove_postproc=True)
    workload = db.commit_workload(normalize(func))
    db.commit_tuning_record(ms.database.TuningRecord(
        trace, workload, [tvm.runtime.const(seconds, "float64")], target,
        ms.arg_info.ArgInfo.from_prim_func(func)))
    return knobs_from_trace(trace)


def test_static_and_symbolic_lookup(tmp_path):
    target = host_target()
    db = open_log(tmp_path, create=True)
    dense = op.conv1x1(1, 12, 12, 32, 32, 1, "relu")
    _commit(db, dense, target, 0, 2e-3)
    best_dense = _commit(db, dense, target, 2, 1e-3)
    symbolic = op.gather_conv3x3(PatchGeometry(1, 16, 16, 2, 1), 16, 16)
    static = specialize_counts(symbolic, [(9,), (9, 4, 16)])
    best_patch = _commit(db, static, target, 1, 1e-3)
    log = TuningLog(tmp_path)
    assert log.best_knobs(dense) == best_dense
    from las_compiler.tuning.tune import _measured

    assert _measured(log.db, normalize(dense)) == [1e-3, 2e-3]  # best first
    assert log.best_knobs(symbolic) == best_patch  # found through a specialised count
    other = op.gather_conv3x3(PatchGeometry(1, 16, 16, 4, 1), 16, 16)
    assert log.best_knobs(other) is None


def test_a_half_written_record_is_dropped_and_corruption_is_an_error(tmp_path):
    target = host_target()
    db = open_log(tmp_path, create=True)
    _commit(db, op.conv1x1(1, 12, 12, 32, 32, 1, "relu"), target, 0, 1e-3)
    records = tmp_path / RECORDS
    good = records.read_text()
    records.write_text(good + good[: len(good) // 2])  # killed while appending
    assert len(open_log(tmp_path)) == 1
    assert records.read_text() == good
    (tmp_path / WORKLOADS).write_text("{not json\n" + (tmp_path / WORKLOADS).read_text())
    with pytest.raises(TuningLogError, match="line 1 is not JSON"):
        open_log(tmp_path)
    with pytest.raises(TuningLogError, match="must hold database_workload.json"):
        open_log(tmp_path / "missing")


def test_the_committed_log_still_reads():
    """Records written by the first, unnamed design space (loop order, then pixels) decode to
    the same named knobs; the log opens without error."""
    from las_compiler.tuning import REPO_LOGS

    for path in sorted(p for p in REPO_LOGS.iterdir() if (p / WORKLOADS).is_file()):
        log = TuningLog(path)
        records = log.db.get_all_tuning_records()
        assert records, path
        for record in records:
            knobs = knobs_from_trace(record.trace)
            assert set(knobs) == {"channel_outer", "pixels"} and knobs["pixels"] > 0


def test_bad_content_is_an_error_naming_file_and_line_before_any_build(tmp_path):
    target = host_target()
    db = open_log(tmp_path, create=True)
    _commit(db, op.conv1x1(1, 12, 12, 32, 32, 1, "relu"), target, 0, 1e-3)
    workloads, records = tmp_path / WORKLOADS, tmp_path / RECORDS
    good_w, good_r = workloads.read_text(), records.read_text()
    workloads.write_text(good_w + '["1", "bm9wZQ=="]\n')  # JSON, but no module
    with pytest.raises(TuningLogError, match=r"database_workload.json: line 2 is not a workload"):
        open_log(tmp_path)
    workloads.write_text(good_w)
    records.write_text(good_r.replace("[0,", "[999,", 1))
    with pytest.raises(TuningLogError, match="line 1 points at workload 999; the log has 1"):
        open_log(tmp_path)
    records.write_text('[0, {"not": "a record"}]\n')
    with pytest.raises(TuningLogError, match="line 1 is not a tuning record of workload 0"):
        open_log(tmp_path)


def test_a_repaired_log_says_so(tmp_path):
    target = host_target()
    db = open_log(tmp_path, create=True)
    _commit(db, op.conv1x1(1, 12, 12, 32, 32, 1, "relu"), target, 0, 1e-3)
    records = tmp_path / RECORDS
    records.write_text(records.read_text() + '[0, [["Sampl')  # cut while appending
    log = TuningLog(tmp_path)
    assert any("dropped line 2" in note for note in log.notes)


def test_records_of_another_model_are_ignored_with_a_note(tmp_path):
    """A log tuned for other kernels: the compile uses none of it, says so, stays exact."""
    import numpy as np
    import torch

    import las_compiler
    from las_compiler.frontend import ExportableLASResNet
    from las_compiler.models import LASResNet, calibrate

    target = host_target()
    db = open_log(tmp_path, create=True)
    _commit(db, op.conv1x1(1, 5, 5, 48, 48, 1, "relu"), target, 0, 1e-3)  # no such layer
    torch.manual_seed(0)
    model = LASResNet((1, 1, 1, 1), "2-2-1-1", num_classes=10, base_channels=16).eval()
    x = torch.randn(1, 3, 32, 32)
    calibrate(model, 0.5, x)
    compiled = las_compiler.compile(model, x, "host", tuning_logs=tmp_path)
    assert "0 kernels tuned" in compiled.metadata["schedules"]
    assert "1 logged kernels this model does not have, ignored" in compiled.metadata["schedules"]
    with torch.no_grad():
        expected = ExportableLASResNet(model)(x)[0].numpy()
    np.testing.assert_allclose(compiled.run(x), expected, rtol=1e-3, atol=1e-3)
