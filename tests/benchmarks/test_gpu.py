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


def test_idle_slots_table():
    rows = gpu.idle_slots()
    # every S of every distinct block geometry of the two networks (the 7x7 maps: S = 1..7)
    assert {(r["map"], r["S"]) for r in rows} >= {("7x7/1", s) for s in range(1, 8)}
    for r in rows:
        assert set(r["auto"]) == set(gpu.IDLE_DEVICES)
        # 12-pixel groups; a projected block's own downsample: a dense map's last tile
        assert r["idle"]["pixel_rows" if r["S"] > 1 else "fused"] < 0.01
        assert all(0.0 <= v < 1.0 for v in r["idle"].values())
    text = gpu.summarise_idle(rows)
    assert text.count("\n| las_resnet") == len(rows) and "auto's picks over 25 %" in text


def test_assembled_resources_table():
    from benchmarks import gpu_resources

    rows = [{"device": "tx2", "arch": 62, "kernel": "conv2d", "entry": f"k{i}_kernel",
             "threads": 128, "registers": r, "shared_bytes": 15 << 10, "spill_bytes": 0,
             "occupancy": o, "limited_by": "shared"} for i, (r, o) in enumerate([(40, 0.25),
                                                                                 (72, 0.12)])]
    text = gpu_resources.summarise(rows)
    assert "| tx2 (sm_62) | conv2d | 2 | 128 | 40-72 | 15.0 | 0 | 12 %-25 % | shared |" in text
    assert "Kernels that spill: 0 of 2." in text
