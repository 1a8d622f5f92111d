"""The detection benchmark's pure-Python parts: plan, predictor rows, report (the run itself
is ``python -m benchmarks.detection [--quick]``)."""

import pytest

from benchmarks import detection


def test_plan_is_the_backbone_of_every_system():
    configs = detection.plan("las_resnet101", (800, 1333))
    assert [c["system"] for c in configs] == list(detection.SYSTEMS)
    assert all(c["backbone"] and (c["height"], c["width"]) == (800, 1333) for c in configs)
    assert [c["rate"] for c in configs] == [None] * (len(detection.SYSTEMS) - 1) + [0.5]


@pytest.mark.live_host  # the host row's own numbers are not asserted, only their shape
def test_predictions_and_report():
    predicted = detection.predictions("las_resnet50", (400, 667))
    assert [p["hardware"] for p in predicted] == ["host", "tx2", "gtx1080", "v100"]
    for p in predicted:
        assert p["dynamic_ms"] > 0 and p["dense_ms"] > 0
        assert abs(p["ratio"] - p["dynamic_ms"] / p["dense_ms"]) < 1e-9
    assert predicted[1]["ratio"] < 1  # the TX2: a dynamic backbone at r = 0.5 is cheaper
    rows = [{**c, "median_ms": ms, "actual_rate": 0.49 if c["rate"] else None}
            for c, ms in zip(detection.plan("las_resnet50", (400, 667)),
                             (100, 110, 150, 120, 80), strict=True)]
    text = detection.summarise(rows, predicted, {"repeats": 5, "rounds": 1})
    assert "| las | 0.5 | 0.490 | 80.0 | 0.80 | 0.80 |" in text
    assert "| tx2 |" in text and "400x667" in text
