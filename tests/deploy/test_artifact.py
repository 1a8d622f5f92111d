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
    assert sorted(os.listdir(path)) == ["metadata.json", "model.so"]
    loaded = las_compiler.load(path)
    np.testing.assert_array_equal(loaded.run(x), compiled.run(x))
    meta = loaded.metadata
    assert meta["model"] == "las_resnet[1, 1, 1, 1]" and meta["snet"] == "2-2-1-1"
    assert meta["rate"] == 0.5 and meta["input"]["shape"] == [1, 3, 32, 32]
    assert {"tvm", "torch", "las_compiler"} <= set(meta["versions"])
    again = loaded.export(tmp_path / "copy")  # a loaded artifact can be exported again
    np.testing.assert_array_equal(las_compiler.load(again).run(x), compiled.run(x))


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
    with pytest.raises(ArtifactError, match="cannot load the compiled library"):
        load_artifact(path)
    (path / "metadata.json").write_text("{ truncated")
    with pytest.raises(ArtifactError, match="corrupt metadata"):
        load_artifact(path)
    (path / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="not a las-compiler-artifact/1 metadata file"):
        load_artifact(path)


def test_unwritable_destination(compiled, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a directory"):
        compiled.export(blocker)
    with pytest.raises(ArtifactError, match="cannot write the artifact"):
        compiled.export(blocker / "sub" / "art")
