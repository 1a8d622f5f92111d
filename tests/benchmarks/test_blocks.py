"""The block benchmark's pure-Python parts: targets report, summary table and plot, from
synthetic rows (the measuring itself is ``python -m benchmarks.blocks --quick``)."""

from benchmarks import blocks


def _rows():
    rows = []
    for block, stride in (("s1b1", 1), ("s2b0", 2)):
        rows += [{"block": block, "stage": int(block[1]), "stride": stride, "S": None, "r": 1.0,
                  "variant": name, "median_ms": ms, "gflops": 100.0 * 2.0 / ms}
                 for name, ms in (("dense_onnxruntime", 2.0), ("dense_tvm", 4.0))]
        for s in (1, 4):
            for rate in (0.25, 0.5, 1.0):
                for variant, factor in (("fused", 1.0), ("halo", 1.2), ("unfused", 2.5),
                                        ("masker_conv1", 0.8)):
                    if variant == "masker_conv1" and (s, stride) != (1, 1):
                        continue
                    rows.append({"block": block, "stage": int(block[1]), "stride": stride,
                                 "S": s, "r": rate, "variant": variant,
                                 "median_ms": 2.0 * rate * factor, "gflops": 1.0,
                                 "active_cells": 3})
    return rows


def test_targets_report_uses_the_best_fused_pipeline_and_reports_misses():
    report = "\n".join(blocks.targets_report(_rows()))
    # best fused at r=0.5 is masker_conv1 (S=1, s1b1): 0.8 / 2.0 = 0.40 <= 0.55
    assert "s1b1 0.40 (masker_conv1 S=1)" in report
    assert "r=1.0, stride-1 blocks" in report and "missed" not in report.split("r=1.0")[0]
    # unfused / best fused at the same S: 2.5/0.8 at S=1 on s1b1, 2.5 elsewhere
    assert "median 2.50x, range 2.50-3.12x over 4 (block, S)" in report
    assert "S=1 masker fused into conv1" in report and "median 1.25x" in report
    assert "dense TVM (our rules) GFLOP/s / ONNX Runtime (goal >= 1.0): s1b1 0.50" in report


def test_summary_lists_every_measured_pipeline(tmp_path):
    rows = _rows()
    text = blocks.summarise(rows)
    assert "| s1b1 | 1 | masker_conv1 | 0.20 | 0.40 | 0.80 |" in text
    assert "| s2b0 | 4 | unfused | 0.62 | 1.25 | 2.50 |" in text
    assert "masker_conv1" not in text.split("| s2b0 |")[1].split("\n")[0]
    blocks.plot(rows, tmp_path / "blocks.png")
    assert (tmp_path / "blocks.png").stat().st_size > 1000


def test_measuring_compiles_the_pipelines_the_compiler_emits():
    """The measuring child on the smallest shape: rows for our dense build and a pipeline at
    an exact, pinned rate, with a per-kernel profile named by the table's kernels. (Other
    tests run beside it: a disturbed timing is flagged, not waited out and taken again.)"""
    rows = blocks.measure_tvm("s4b1", granularities=(7,), rates=(0.5,), variants=("fused",),
                              repeats=2, retries=0)
    assert [r["variant"] for r in rows] == ["dense_tvm", "fused"]
    fused = rows[1]
    assert fused["cells"] == 1 and fused["active_cells"] == 0  # round(0.5 * 1) == 0
    assert {"masker", "compact", "conv1x1_rows"} <= set(fused["profile"])
    assert all(r["median_ms"] > 0 and r["attempts"] == 1 for r in rows)
