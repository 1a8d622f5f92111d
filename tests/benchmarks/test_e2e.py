"""The end-to-end benchmark's pure-Python parts: plan, kernel classification, ratios, report,
README section. Nothing here compiles or imports a framework (the run itself is
``python -m benchmarks.e2e --quick``)."""

import json

import pytest

from benchmarks import e2e


def test_plan_full_and_quick():
    full = e2e.plan()
    assert {c["model"] for c in full} == {"las_resnet50", "las_resnet101"}
    for model in ("las_resnet50", "las_resnet101"):
        mine = [c for c in full if c["model"] == model]
        dense = [c["system"] for c in mine if c["rate"] is None]
        assert dense == ["onnxruntime", "openvino", "torch_eager", "torch_compile", "tvm_dense"]
        assert [c["rate"] for c in mine if c["system"] == "las"] == [0.3, 0.5, 0.7]
        assert all(c["snet"] == "4-4-2-1" and c["batch"] == 1 for c in mine)
    quick = e2e.plan(quick=True)
    assert [(c["model"], c["system"], c["rate"]) for c in quick] == [
        ("las_resnet50", s, None) for s in e2e.DENSE_SYSTEMS] + [("las_resnet50", "las", 0.5)]
    assert {c["batch"] for c in e2e.plan(quick=True, batch=4)} == {4}
    json.dumps(full)  # configurations cross process boundaries and land in the JSON


def test_plan_rejects_unknown_names():
    with pytest.raises(ValueError, match="resnet18"):
        e2e.plan(models=["resnet18"])
    with pytest.raises(ValueError, match="tensorrt"):
        e2e.plan(systems=["tensorrt"])
    with pytest.raises(ValueError, match="1.5"):
        e2e.plan(rates=[1.5])
    with pytest.raises(ValueError, match="batch"):
        e2e.plan(batch=0)


@pytest.mark.parametrize("name,kind", [
    ("masker", "mask"), ("masker4", "mask"), ("compact1", "mask"), ("active_prefix", "mask"),
    ("fused_reshape9_cast2", "mask"), ("fused_reshape1_cast", "mask"), ("fused_cast1", "mask"),
    ("vm.builtin.tensor_to_shape", "mask"), ("vm.builtin.match_shape", "mask"),
    ("dilated_rows_0", "mask"), ("active_rows_1", "mask"), ("conv1x1_rows_2", "kernel"),
    ("vm.builtin.alloc_storage", "runtime"), ("shape_func12", "runtime"),
    ("conv1x1_scatter_add3", "kernel"), ("gather_conv3x36", "kernel"), ("conv2d", "kernel"),
    ("max_pool2d", "kernel"), ("fused_reshape_transpose", "kernel"), ("relu_inplace", "kernel"),
])
def test_kernel_kind(name, kind):
    assert e2e.kernel_kind(name) == kind


def test_time_shares():
    seconds = {"masker_1": 1.0, "conv2d_0": 2.0, "vm.builtin.alloc_tensor": 1.0}
    assert e2e.time_shares(seconds) == {"mask": 0.25, "runtime": 0.25, "kernel": 0.5}
    assert e2e.time_shares({}) == {"mask": 0.0, "runtime": 0.0, "kernel": 0.0}


def test_quiet_timing_retries_disturbed_measurements(monkeypatch):
    from benchmarks import _isolate

    monkeypatch.setattr(_isolate, "wait_for_idle", lambda *a, **k: 0.0)
    results = iter([{"median_ms": 9.0, "foreign_cores": 1.5},
                    {"median_ms": 5.0, "foreign_cores": 0.1}])
    res = e2e.quiet_timing(lambda: next(results))
    assert res == {"median_ms": 5.0, "foreign_cores": 0.1, "attempts": 2, "contended": False}
    noisy = iter([{"median_ms": t, "foreign_cores": f} for t, f in ((9, 1.5), (7, 0.9), (8, 1))])
    res = e2e.quiet_timing(lambda: next(noisy), retries=2)
    assert res["median_ms"] == 7 and res["attempts"] == 3 and res["contended"]


def _rows():
    rows = [
        {"model": "las_resnet50", "snet": "4-4-2-1", "rate": None, "system": "onnxruntime",
         "median_ms": 100.0},
        {"model": "las_resnet50", "snet": "4-4-2-1", "rate": None, "system": "openvino",
         "median_ms": 80.0},
        {"model": "las_resnet50", "snet": "4-4-2-1", "rate": None, "system": "tvm_dense",
         "median_ms": 90.0, "compile_seconds": 12.0},
        {"model": "las_resnet50", "snet": "4-4-2-1", "rate": 0.5, "system": "las",
         "median_ms": 65.0, "compile_seconds": 15.0, "mask_share": 0.012, "actual_rate": 0.49},
        {"model": "las_resnet50", "snet": "4-4-2-1", "rate": 0.3, "system": "las",
         "median_ms": None, "error": "IsolatedError: child | died"},
        {"model": "las_resnet101", "snet": "4-4-2-1", "rate": 0.5, "system": "las",
         "median_ms": 120.0, "compile_seconds": 70.0, "mask_share": 0.02, "contended": True},
    ]
    return e2e.add_ratios(rows)


def test_ratios_are_per_architecture_against_ort_and_the_best_peer():
    rows = _rows()
    assert [r["ratio_vs_onnxruntime"] for r in rows] == [1.0, 0.8, 0.9, 0.65, None, None]
    assert [r["ratio_vs_best_peer"] for r in rows] == [1.25, 1.0, 1.125, 0.8125, None, None]
    assert {r["best_peer"] for r in rows[:5]} == {"openvino"} and rows[5]["best_peer"] is None


def test_ratios_are_per_batch():
    rows = e2e.add_ratios([
        {"model": "m", "system": "onnxruntime", "rate": None, "batch": 1, "median_ms": 10.0},
        {"model": "m", "system": "onnxruntime", "rate": None, "batch": 4, "median_ms": 40.0},
        {"model": "m", "system": "tvm_dense", "rate": None, "batch": 4, "median_ms": 30.0}])
    assert [r["ratio_vs_best_peer"] for r in rows] == [1.0, 1.0, 0.75]


def test_goals_report_met_missed_and_missing():
    text = "\n".join(e2e.goals(_rows()))
    assert "LAS-ResNet-50, batch 1: LAS 4-4-2-1 at r=0.5 / best dense peer (openvino) " \
        "(goal <= 0.60x): 0.81x -> missed (actual r 0.490)" in text
    assert "our dense build / best dense peer (openvino) (goal <= 1.00x): 1.12x -> missed" \
        in text
    assert "70.0 s -> missed (las_resnet101 las r=0.5)" in text
    assert "2.00% -> met (las_resnet101 las r=0.5)" in text
    assert "not measured" in "\n".join(e2e.goals([]))


def test_summary_has_a_table_per_architecture():
    md = e2e.summarise(_rows(), {"date": "today", "cpu": "cpu", "threads": 2, "repeats": 20})
    assert "### LAS-ResNet-50 (S_net 4-4-2-1)" in md and "### LAS-ResNet-101" in md
    assert "| onnxruntime | dense | - | 100.00 | 1.25 | 1.00 | - | - |" in md
    assert "| las | 0.5 | 0.490 | 65.00 | 0.81 | 0.65 | 15.0 | 1.2% |" in md
    assert "Best dense peer: openvino." in md
    assert "failed: IsolatedError: child / died" in md  # a '|' would break the table
    assert "120.00*" in md and "\\* other processes" in md
    assert md.index("| las | 0.3 |") < md.index("| las | 0.5 |")


def test_error_text_keeps_the_last_line():
    assert e2e.error_text(RuntimeError("first\nthe cause\n\n")) == "RuntimeError: the cause"
    assert e2e.error_text(ValueError()) == "ValueError"


def test_readme_section_is_appended_then_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n<!-- blocks:begin -->\nblocks\n<!-- blocks:end -->\n\n"
                      "## Notes\nkeep me\n")
    e2e.write_readme_section("first table", "python -m benchmarks.e2e", readme)
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- blocks:begin -->\nblocks\n<!-- blocks:end -->")
    assert "keep me" in text and text.rstrip().endswith(e2e.END)
    e2e.write_readme_section("second table", "python -m benchmarks.e2e --quick", readme)
    again = readme.read_text()
    assert "second table" in again and "first table" not in again
    assert again.count(e2e.BEGIN) == 1 and again.count(e2e.END) == 1
    assert again.split(e2e.BEGIN)[0] == text.split(e2e.BEGIN)[0]
    assert not list(tmp_path.glob("*.tmp"))
    e2e.write_readme_section("batch four", "python -m benchmarks.e2e --batch 4", readme, batch=4)
    both = readme.read_text()
    assert "<!-- e2e-batch4:begin -->" in both and "second table" in both  # its own section


def test_each_row_reports_its_fastest_round_and_ratios_follow():
    base = [{"model": "m", "system": "onnxruntime", "rate": None},
            {"model": "m", "system": "las", "rate": 0.5}]
    first = [{**base[0], "median_ms": 40.0}, {**base[1], "median_ms": 60.0}]
    second = [{**base[0], "median_ms": 50.0}, {**base[1], "median_ms": None, "error": "x"}]
    rows = e2e.best_of_rounds([first, second])
    assert [r["median_ms"] for r in rows] == [40.0, 60.0]
    assert rows[1]["round_medians_ms"] == [60.0, None]
    assert rows[1]["ratio_vs_onnxruntime"] == 1.5
    assert rows[1]["round_ratios_vs_best_peer"] == [1.5, None]


def test_claims_are_checked_against_every_round():
    base = [{"model": "m", "system": "onnxruntime", "rate": None},
            {"model": "m", "system": "tvm_dense", "rate": None}]
    rounds = [[{**base[0], "median_ms": 72.0}, {**base[1], "median_ms": 58.0}],
              [{**base[0], "median_ms": 60.0}, {**base[1], "median_ms": 72.0}]]
    rows = e2e.best_of_rounds(rounds)
    assert rows[1]["ratio_vs_best_peer"] == pytest.approx(58 / 60)  # fastest of each
    assert rows[1]["round_ratios_vs_best_peer"] == pytest.approx([58 / 72, 72 / 60])
    assert e2e.ratio_range(rows[1]) == " (0.81-1.20)"
    text = "\n".join(e2e.goals(rows))
    assert "0.97x -> met; rounds disagree: 0.81, 1.20" in text
