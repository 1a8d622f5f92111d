"""The ONNX benchmark's table and goal line (the run itself is
``python -m benchmarks.onnx_frontend``)."""

from benchmarks import onnx_frontend


def _row(ratio_rounds, masks_equal=True):
    torch_s = 10.0
    return {"model": "las_resnet50", "torch_compile_s": torch_s,
            "onnx_compile_s": torch_s * sorted(ratio_rounds)[len(ratio_rounds) // 2],
            "ratio": sorted(ratio_rounds)[len(ratio_rounds) // 2], "ratio_rounds": ratio_rounds,
            "export_s": 7.0, "file_mb": 102.0, "max_rel_err": 1e-6, "masks_equal": masks_equal,
            "ort_las_ms": 60.0, "ort_dense_ms": 50.0}


def test_table_and_goal_verdicts():
    meta = {"date": "2026-12-07", "cpu": "AMD EPYC", "rounds": 2, "commit": "abc"}
    text = onnx_frontend.summarise([_row([0.8, 0.9])], meta)
    assert "| LAS-ResNet-50 | 10.0 | 9.0 | 0.90 (0.80, 0.90) |" in text
    assert "masks equal" in text and "(goal <= 1.20): 0.90 -> met" in text
    late = onnx_frontend.summarise([_row([1.3, 1.4], masks_equal=False)], meta)
    assert "-> missed" in late and "masks differ" in late
