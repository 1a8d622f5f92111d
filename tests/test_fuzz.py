"""Differential fuzzing in CI: a few hundred compiled-vs-PyTorch cases over random block and
network configurations (``python -m las_compiler.fuzz --cases 10000`` is the long run)."""

from las_compiler import fuzz


def test_a_few_hundred_random_cases_match_pytorch():
    reports = []
    summary = fuzz.run(300, seed=2026, per_compile=30, network_share=0.15,
                       report=reports.append)
    assert summary.cases == 300 and not summary.mismatches, reports
    assert summary.exact_rates["0"] > 0 and summary.exact_rates["1"] > 0
    assert len(summary.cases_by_pipeline) >= 3


def test_a_mismatch_prints_a_reproducer(monkeypatch):
    """Break the comparison on purpose: the report names the case and how to rerun it."""
    monkeypatch.setattr(fuzz, "RTOL", -1.0)
    monkeypatch.setattr(fuzz, "ATOL", -1.0)
    reports = []
    config = fuzz.FuzzBlock(32, 16, 2, 9, 11, 3, 1, "fused", seed=5)
    summary = fuzz.Summary()
    fuzz.run_block_config(config, 2, summary, report=reports.append)
    assert len(summary.mismatches) == 2
    assert "python -m las_compiler.fuzz --reproduce" in reports[0]
    assert '"pipeline": "fused"' in reports[0] and '"case": 0' in reports[0]


def test_gpu_schedules_emulated_on_random_cases():
    """The same fuzzing on the CUDA rules' schedules (a Jetson TX2's), run serially here."""
    reports = []
    summary = fuzz.run(80, seed=7, per_compile=20, network_share=0.25, report=reports.append,
                       emulate_gpu="nvidia/jetson-tx2")
    assert summary.cases == 80 and not summary.mismatches, reports
    assert summary.schedules == "nvidia/jetson-tx2"
