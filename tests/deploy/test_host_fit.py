"""Code this CPU cannot execute is a clear error before the library loads, never a SIGILL.

The CPUs are recorded ones (``tests/machines.py``), so the outcome is the same on any host.
"""

import json

import numpy as np
import pytest
import torch
import tvm

import las_compiler
from las_compiler.compiler import resolve_target
from las_compiler.deploy import ArtifactError, host_fit, load_artifact
from las_compiler.target import cpu_flags_needed, host_target_dict, read_cpu_flags

from ..machines import RECORDED
from ..models.helpers import make_block

ZEN4 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"}


def _cpu(kind):
    return read_cpu_flags(RECORDED[kind].cpuinfo)


@pytest.mark.parametrize("kind", sorted(RECORDED))
def test_the_host_target_of_each_machine_fits_it_and_only_wider_ones(kind):
    """The target chosen for a machine needs no flag it lacks; an AVX-512 build needs flags
    that the AVX2 machine lacks, and these are named."""
    target = tvm.target.Target(host_target_dict(RECORDED[kind].cpuinfo, num_cores=2))
    needed = cpu_flags_needed(target)
    assert {"avx2", "fma"} <= set(needed)
    assert host_fit.unfit_reason(str(target), needed, _cpu(kind)) is None
    zen4 = cpu_flags_needed(tvm.target.Target(ZEN4))
    reason = host_fit.unfit_reason(json.dumps(ZEN4), zen4, _cpu("zen3_avx2"))
    assert "znver4" in reason and "avx512f" in reason and "avx2," not in reason
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57"}
    assert "aarch64-linux-gnu, and this machine is x86_64" in host_fit.unfit_reason(
        json.dumps(arm), (), _cpu(kind))


def test_a_gpu_module_checks_its_host_triple():
    """A GPU module's host code (launch glue) records no flags; its triple is checked."""
    assert cpu_flags_needed(resolve_target("nvidia/nvidia-h100")) == []
    jetson = json.dumps({"kind": "cuda", "arch": "sm_62",
                         "host": {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}})
    assert "aarch64-linux-gnu" in host_fit.unfit_reason(jetson, (), _cpu("zen3_avx2"))
    gpu = json.dumps({"kind": "cuda", "arch": "sm_90", "host": ZEN4})
    assert host_fit.unfit_reason(gpu, (), _cpu("zen3_avx2")) is None


def test_an_avx512_build_on_an_avx2_cpu_is_refused_before_it_runs(tmp_path, monkeypatch):
    """The issue's crash: a Zen 4 build run, exported and loaded on an AVX2-only CPU."""
    monkeypatch.setattr(host_fit, "_this_cpu", lambda: _cpu("zen3_avx2"))
    block = make_block(64, 16, 1, 4, seed=0)
    compiled = las_compiler.compile_block(block, torch.zeros(1, 8, 8, 64), ZEN4, "fused")
    assert not compiled.runnable
    assert "avx512f" in compiled.unrunnable_reason
    with pytest.raises(RuntimeError, match=r"cannot run on this machine: .*znver4.*avx512f"):
        compiled.run(np.zeros((1, 8, 8, 64), np.float32))
    path = compiled.export(tmp_path / "zen4")  # exporting needs no run
    assert "avx512f" in json.loads((path / "metadata.json").read_text())["cpu_flags"]
    with pytest.raises(ArtifactError, match="this machine cannot run it: .*lacks"):
        load_artifact(path)
