"""The GPU benchmark's predicted table (pure Python: the predictor and its profiles)."""

from benchmarks import gpu


def test_predicted_goals_table():
    rows = gpu.predictions(("tx2", "v100"))
    assert [(r["case"][:22], r["hardware"]) for r in rows] == [
        ("LAS-ResNet-101 4-4-2-1", "tx2"), ("LAS-ResNet-101 4-4-2-1", "v100"),
        ("LAS-ResNet-101 4-4-7-1", "tx2"), ("LAS-ResNet-101 4-4-7-1", "v100"),
        ("LAS-ResNet-50 4-4-2-1,", "tx2"), ("LAS-ResNet-50 4-4-2-1,", "v100")]
    for r in rows:
        assert r["dynamic_ms"] > 0 and abs(r["ratio"] - r["dynamic_ms"] / r["dense_ms"]) < 1e-9
    text = gpu.summarise(rows)
    assert text.count("| tx2 |") == 3 and "not measured" in text
