"""Artifacts: round trip through disk, atomic writes, clear errors for broken ones."""

import json
import os

import numpy as np
import pytest
import torch

import las_compiler
from las_compiler.deploy import ArtifactError, load_artifact, write_artifact
from las_compiler.models import LASResNet, calibrate


@pytest.fixture(scope="module")
def compiled():
    torch.manual_seed(0)
    model = LASResNet((1, 1, 1, 1), "2-2-1-1", num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 32, 32))
    return las_compiler.compile(model, torch.randn(1, 3, 32, 32), "host",
                                metadata={"rate": 0.5})


def test_round_trip(compiled, tmp_path):
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    path = compiled.export(tmp_path / "art")
    assert sorted(os.listdir(path)) == ["check.npz", "metadata.json", "model.so"]
    loaded = las_compiler.load(path)
    np.testing.assert_array_equal(loaded.run(x), compiled.run(x))
    check = loaded.check_data  # PyTorch's outputs and masks, what a board is checked against
    out, masks = loaded.run_with_masks(check.input)
    agreement = check.compare([out], masks)
    assert agreement.masks_equal and agreement.max_abs_error < 1e-4 * agreement.output_scale
    meta = loaded.metadata
    assert meta["model"] == "las_resnet-1-1-1-1" and meta["snet"] == "2-2-1-1"
    assert meta["rate"] == 0.5 and meta["input"]["shape"] == [1, 3, 32, 32]
    assert {"tvm", "torch", "las_compiler"} <= set(meta["versions"])
    again = loaded.export(tmp_path / "copy")  # a loaded artifact can be exported again
    np.testing.assert_array_equal(las_compiler.load(again).run(x), compiled.run(x))


def test_export_builds_machine_code_once_and_runs_it_safely(tmp_path):
    """After an export the module runs the library it wrote (no second code generation at the
    first run, and a second export copies it), from a private copy: rewriting the artifact's
    file in place afterwards does not bring the process down."""
    torch.manual_seed(1)
    model = LASResNet((1, 1, 1, 1), "2-2-1-1", num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 32, 32))
    x = torch.randn(1, 3, 32, 32)
    fresh = las_compiler.compile(model, x, "host", tuning_logs=False)
    path = fresh.export(tmp_path / "art")
    assert fresh._module is not fresh._executable  # runs the exported library
    library = (path / "model.so").read_bytes()
    (path / "model.so").write_bytes(b"\0" * len(library))  # in place, same inode
    out = fresh.run(x)
    (path / "model.so").write_bytes(library)
    copy = fresh.export(tmp_path / "copy")  # the library it wrote, copied
    assert (copy / "model.so").read_bytes() == library
    np.testing.assert_array_equal(las_compiler.load(copy).run(x), out)


class _FailingExecutable:
    def export_library(self, path):
        with open(path, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")


def test_failed_export_leaves_nothing_and_keeps_the_old_artifact(compiled, tmp_path):
    dest = tmp_path / "art"
    with pytest.raises(RuntimeError, match="disk full"):
        write_artifact(dest, _FailingExecutable(), {})
    assert os.listdir(tmp_path) == []  # no staging directory left behind
    compiled.export(dest)
    before = (dest / "metadata.json").read_text()
    with pytest.raises(RuntimeError):
        write_artifact(dest, _FailingExecutable(), {})
    assert (dest / "metadata.json").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["art"]


def test_broken_artifacts_are_named(compiled, tmp_path):
    path = compiled.export(tmp_path / "art")
    with pytest.raises(ArtifactError, match="is not an artifact directory"):
        load_artifact(tmp_path / "missing")
    (path / "model.so").write_bytes(b"not a library")
    with pytest.raises(ArtifactError, match="damaged library"):
        load_artifact(path)
    meta = json.loads((path / "metadata.json").read_text())  # a garbage file recorded as such
    import hashlib

    meta["library"] = {"file": "model.so", "bytes": 13,
                       "sha256": hashlib.sha256(b"not a library").hexdigest()}
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot load the compiled library"):
        load_artifact(path)
    (path / "metadata.json").write_text("{ truncated")
    with pytest.raises(ArtifactError, match="corrupt metadata"):
        load_artifact(path)
    (path / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="not a las-compiler-artifact/2 metadata file"):
        load_artifact(path)


def test_unwritable_destination(compiled, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a directory"):
        compiled.export(blocker)
    with pytest.raises(ArtifactError, match="cannot write the artifact"):
        compiled.export(blocker / "sub" / "art")


def test_a_damaged_library_is_named_before_it_is_loaded(compiled, tmp_path):
    """A cut model.so used to kill the process with a bus error inside dlopen."""
    path = compiled.export(tmp_path / "art")
    library = path / "model.so"
    data = library.read_bytes()
    library.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"model.so: damaged library: \d+ bytes, the "
                                            r"artifact was written with \d+"):
        load_artifact(path)
    library.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(ArtifactError, match="SHA-256 differs"):
        load_artifact(path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("blocks"), "missing key 'blocks'"),
    (lambda m: m.update(blocks=m["blocks"][:2]), "lists 2 dynamic blocks but 'outputs' lists 4"),
    (lambda m: m["blocks"][0].pop("S"), r"'blocks\[0\].S' must be a int"),
    (lambda m: m["input"].update(shape=[1, -3]), "'input.shape' must be a list of positive"),
    (lambda m: m.pop("library"), "'library' must give the library's bytes and sha256"),
])
def test_metadata_is_checked_against_its_schema(compiled, tmp_path, change, message):
    path = compiled.export(tmp_path / "art")
    meta = json.loads((path / "metadata.json").read_text())
    change(meta)
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(path)


def test_artifacts_are_readable_by_others_and_stale_exports_are_cleaned(compiled, tmp_path):
    old = os.umask(0o022)
    try:
        path = compiled.export(tmp_path / "art")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o755  # a service account can read it
    stale = tmp_path / ".art.tmp-999999999-abc"  # left by a killed export (no such process)
    stale.mkdir()
    live = tmp_path / f".art.tmp-{os.getpid()}-xyz"  # an export in progress: kept
    live.mkdir()
    compiled.export(tmp_path / "art")
    assert not stale.exists() and live.exists()


def test_loaded_modules_use_the_cores_of_their_target(compiled, tmp_path):
    """With TVM_NUM_THREADS unset, TVM would size its pool to half the cores (one on a 2-core
    VM); the library sizes it from the target's num-cores itself."""
    import subprocess
    import sys

    path = compiled.export(tmp_path / "art")
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    code = (f"import las_compiler, numpy as np; m = las_compiler.load({str(path)!r}); "
            "m.run(np.zeros((1, 3, 32, 32), np.float32)); print(m.threads_in_effect)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    expected = min(len(os.sched_getaffinity(0)),
                   json.loads(compiled.metadata["target"]).get("num-cores", 1 << 30))
    assert int(out.stdout.strip()) == expected
    assert las_compiler.load(path, threads=1).threads == 1  # overridable


def test_one_module_shared_by_threads(compiled, tmp_path):
    """Two threads calling one loaded module used to crash the process (a VM is per call
    state); each thread now gets its own VM, and every result is right."""
    import threading

    loaded = las_compiler.load(compiled.export(tmp_path / "art"))
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    expected = [compiled.run(x) for x in inputs]
    failures = []

    def work(offset):
        try:
            for i in range(1000):
                k = (i + offset) % len(inputs)
                if not np.array_equal(loaded.run(inputs[k]), expected[k]):
                    failures.append(k)
        except Exception as err:  # noqa: BLE001 - a thread's error must fail the test
            failures.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_non_finite_inputs_are_rejected_unless_asked(compiled):
    x = np.zeros((1, 3, 32, 32), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="input holds 1 NaN and 1 infinite values"):
        compiled.run(x)
    with pytest.raises(ValueError, match="check_finite=False"):
        compiled.run_with_masks(x)
    assert compiled.run(x, check_finite=False).shape == (1, 10)
