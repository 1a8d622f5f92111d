"""The peer-benchmark harness: process isolation, the dense block, the ONNX export.

Correctness only: no timing assertions (speed claims live in the benchmark tables).
"""

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from benchmarks._isolate import (
    REPO_ROOT,
    ForeignLoad,
    IsolatedError,
    RemoteTraceback,
    run_isolated,
    timed_runs,
)
from benchmarks.peers import (
    BLOCK_SHAPES,
    SHAPES_BY_NAME,
    as_shape,
    check_onnxruntime,
    dense_block,
    format_table,
    make_block,
    make_input,
    measure_child,
    measure_peers,
    write_json_atomic,
)
from las_compiler.predictor.layers import network_blocks


def test_run_isolated_returns_value_and_pins_threads():
    assert run_isolated("json:dumps", {"obj": [1, {"a": 2}]}, timeout=60) == '[1, {"a": 2}]'
    assert run_isolated("os:getenv", {"key": "OMP_NUM_THREADS"}, timeout=60) == "2"
    assert run_isolated("os.getenv", {"key": "TVM_NUM_THREADS"}, timeout=60) == "2"


def test_run_isolated_reraises_child_exception_with_traceback():
    with pytest.raises(json.JSONDecodeError, match="Expecting") as info:
        run_isolated("json:loads", {"s": "{not json"}, timeout=60)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback" in str(cause) and "json/decoder.py" in str(cause)
    if sys.version_info >= (3, 11):
        assert any("json:loads" in note for note in info.value.__notes__)


def test_run_isolated_reports_import_errors_and_crashes():
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        run_isolated("no_such_module:f", {}, timeout=60)
    with pytest.raises(IsolatedError, match="exited with code"):
        run_isolated("os:abort", {}, timeout=60)


def test_median_ms_counts_calls():
    calls = []
    result = timed_runs(lambda: calls.append(1), repeats=5, warmup_s=0.0)
    assert result["runs"] == 5 and len(calls) == 6  # one untimed warm-up call
    assert 0 <= result["min_ms"] <= result["median_ms"]
    assert set(result) == {"median_ms", "min_ms", "runs", "foreign_cores"}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_foreign_load_sees_other_processes_not_our_own():
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nt = time.time()\nwhile time.time() - t < 1: pass"])
    try:
        with ForeignLoad() as other:  # sleeping here: the busy loop is someone else's
            busy.wait(timeout=10)
    finally:
        busy.kill()
    assert other.cores is not None and other.cores > 0.3


def test_block_shapes_are_resnet50():
    assert [s.name for s in BLOCK_SHAPES] == [f"s{i}b{j}" for i in (1, 2, 3, 4) for j in (0, 1)]
    s2b0 = SHAPES_BY_NAME["s2b0"]
    assert (s2b0.in_channels, s2b0.out_channels, s2b0.height, s2b0.out_height) == \
        (256, 512, 56, 28)
    assert s2b0.dense_macs() == 256 * 128 * 56**2 + 128 * 128 * 9 * 28**2 + 128 * 512 * 28**2 * 3
    s4b1 = SHAPES_BY_NAME["s4b1"]
    assert not s4b1.downsample and (s4b1.in_channels, s4b1.out_height) == (2048, 7)
    assert SHAPES_BY_NAME["s1b0"].downsample  # 64 -> 256 channels at stride 1
    assert as_shape(asdict(s4b1)) == s4b1 and as_shape("s4b1") is s4b1  # across processes
    # the benchmark's blocks are the network's: the predictor's layers of LAS-ResNet-50
    layers = {b.name: b for b in network_blocks("las_resnet50")}
    for shape in BLOCK_SHAPES:
        stage, index = shape.name[1:].split("b")
        assert dataclasses.replace(shape, name=f"layer{stage}.{index}") == \
            layers[f"layer{stage}.{index}"]


def test_peers_module_does_not_import_frameworks():
    code = ("import sys, benchmarks.peers; "
            "print(sorted({'torch', 'onnxruntime', 'tvm'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", ["s1b0", "s2b0", "s4b1"])
def test_dense_wrapper_equals_las_block_with_all_on_mask(name):
    block = make_block(name, seed=3)
    x = make_input(name, seed=3)
    with torch.no_grad():
        assert bool((block.patch_mask(x) == 1).all())  # masker at init: every patch on
        las, dense = block(x), dense_block(block)(x)
    torch.testing.assert_close(dense, las, rtol=0, atol=0)
    bn = block.bn3
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))  # randomised
    # Deterministic from the seed, and the caller's global RNG is untouched.
    state = torch.random.get_rng_state()
    again = make_block(name, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(block.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export internals
def test_onnxruntime_export_matches_torch_eager(tmp_path):
    path = tmp_path / "s4b1.onnx"
    check = check_onnxruntime("s4b1", seed=1, onnx_path=path)
    assert path.exists()
    assert check["scale"] > 0.1 and check["max_abs_err"] <= 1e-4 * check["scale"]


def test_measure_peers_rows_end_to_end():
    rows = measure_peers(["s4b1"], ("torch_eager",), repeats=2, rounds=1, retries=0,
                         idle_wait_s=0)
    (row,) = rows
    assert {k: row[k] for k in ("stage", "block", "stride", "variant")} == {
        "stage": 4, "block": "s4b1", "stride": 1, "variant": "dense_torch_eager"}
    assert row["median_ms"] > 0 and row["gflops"] > 0 and len(row["round_ms"]) == 1
    assert row["rounds_used"] == 1 and isinstance(row["contended"], bool)
    with pytest.raises(ValueError, match="unknown framework"):
        measure_peers(["s4b1"], ("tensorflow",))
    with pytest.raises(ValueError, match="unknown framework"):
        measure_child("tensorflow", "s4b1")


def test_table_and_atomic_json(tmp_path):
    rows = [{"stage": 4, "block": "s4b1", "stride": 1, "variant": "dense_onnxruntime",
             "median_ms": 1.5, "gflops": 291.2}]
    table = format_table(rows)
    assert "dense_onnxruntime ms" in table and "| s4b1 | 1 |" in table and "*" not in table
    assert "| 1.500* |" in format_table([{**rows[0], "contended": True}])
    path = write_json_atomic(tmp_path / "new" / "peers.json", {"rows": rows})
    assert json.loads(path.read_text()) == {"rows": rows}
    assert os.listdir(path.parent) == ["peers.json"]  # no temporary left behind
