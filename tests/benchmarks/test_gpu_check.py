"""``scripts/gpu_check.sh`` end to end on this CPU: a host build of two blocks and a narrow
network (compiled code-only), run the way the GPU machine runs it (the TVM runtime alone, from
the build's own copy, the source tree laid out as the package; the network rebuilt from its
seed and its weights prepared by the module): numbers against PyTorch, one table. What a GPU
adds (the device binary loading, cuDNN timing) is not exercised here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def host_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "build"
    manifest = gpu_check.build("host", out, quick=True, log=lambda _msg: None)
    return out, manifest


def test_build_writes_cases_runtime_and_manifest(host_build):
    out, manifest = host_build
    assert [c["name"] for c in manifest["cases"]] == ["s1b1-S4-fused-b1", "s2b0-S4-dense-b1"]
    assert [n["name"] for n in manifest["networks"]] == ["tiny-4-2-1-2-48x56-b1"]
    network = out / "cases" / "tiny-4-2-1-2-48x56-b1"
    assert (network / "maskers.npz").is_file()
    assert "weights" in json.loads((network / "metadata.json").read_text())  # code only
    assert json.loads((out / gpu_check.MANIFEST).read_text()) == manifest
    for case in manifest["cases"]:
        assert (out / "cases" / case["name"] / "model.so").is_file()
        assert len(case["weights_sha256"]) == 64
    runtime = out / "runtime" / "tvm" / "lib"
    assert (runtime / "libtvm_runtime.so").is_file()
    assert not (runtime / "libtvm_compiler.so").exists()


def test_the_script_checks_the_build_with_the_runtime_alone(host_build):
    out, _ = host_build
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out),
                           "--repeats", "3", "--json", str(out / "rows.json")],
                          env={**env, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TVM runtime only: yes" in proc.stdout
    rows = json.loads((out / "rows.json").read_text())
    assert len(rows) == 3 and proc.stdout.count("| yes |") == 3
    for row in rows:
        assert row["masks_equal"] and row["max_rel_error"] < 1e-5
        assert 0.2 < row["active"] < 0.8 and row["las_ms"] > 0 and row["dense_torch_ms"] > 0


def test_a_case_whose_weights_differ_is_refused(host_build, tmp_path):
    out, manifest = host_build
    import shutil

    copy = tmp_path / "build"
    shutil.copytree(out / "cases", copy / "cases")
    changed = {**manifest, "cases": [{**manifest["cases"][0], "weights_sha256": "0" * 64}],
               "networks": []}
    (copy / gpu_check.MANIFEST).write_text(json.dumps(changed))
    rows = gpu_check.run(copy, repeats=1, log=lambda _msg: None)
    assert rows == [{"case": "s1b1-S4-fused-b1", "pipeline": "fused", "batch": 1,
                     "error": "this torch rebuilt other weights from the seed"}]
    assert gpu_check.main(["run", str(copy)]) == 1
