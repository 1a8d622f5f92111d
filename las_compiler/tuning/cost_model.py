"""Cost models for tuning our kernels: the predictor-seeded one, and the stock baselines.

Stock ``XGBModel`` scores candidates at random until it has 100 measurements, so the first
100 trials of every task are a random search. :class:`SeededCostModel` ranks candidates with
the analytical predictor from the first trial (it reads the knobs from the candidate's trace
and models the kernel with that tile, see :mod:`.kernel_model`), and hands over to XGBoost as
measurements accumulate: the score is a blend of the two rankings whose XGBoost weight grows
from 0 (fewer than ``warmup`` measurements of the task) to 1 (``warmup + handover``).
Rankings, not raw scores, are blended, since the two live on different scales.
"""

from __future__ import annotations

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ..predictor.hardware import Hardware
from ..schedules.knobs import knobs_from_trace
from .kernel_model import predicted_us

COST_MODELS = ("seeded", "xgb", "random")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] by rank (higher value -> higher score)."""
    if len(values) <= 1:
        return np.ones(len(values))
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return order / (len(values) - 1)


@derived_object
class SeededCostModel(ms.cost_model.PyCostModel):
    """Predictor ranking first, XGBoost on measurements later (see the module docstring)."""

    def __init__(self, hardware: Hardware, warmup: int = 16, handover: int = 48,
                 num_tuning_cores: int | None = None):
        super().__init__()
        self.hardware = hardware
        self.warmup, self.handover = warmup, handover
        self.xgb = ms.cost_model.XGBModel(num_warmup_samples=warmup,
                                          num_tuning_cores=num_tuning_cores)
        self.measured = 0

    def load(self, path: str) -> None:
        self.xgb.load(path)

    def save(self, path: str) -> None:
        self.xgb.save(path)

    def update(self, context, candidates, results) -> None:
        self.measured += len(results)
        self.xgb.update(context, candidates, results)

    def xgb_weight(self) -> float:
        return float(np.clip((self.measured - self.warmup) / self.handover, 0.0, 1.0))

    def predict(self, context, candidates) -> np.ndarray:
        func = context.mod["main"]
        latency = np.array([predicted_us(self.hardware, func, knobs_from_trace(c.sch.trace))
                            for c in candidates])
        score = _ranks(-latency)  # faster -> higher
        weight = self.xgb_weight()
        if weight > 0.0:
            score = (1.0 - weight) * score + weight * _ranks(self.xgb.predict(context,
                                                                              candidates))
        return score.astype("float64")


def make_cost_model(name: str, hardware: Hardware, num_tuning_cores: int = 2):
    if name == "seeded":
        return SeededCostModel(hardware, num_tuning_cores=num_tuning_cores)
    if name == "xgb":
        return ms.cost_model.XGBModel(num_tuning_cores=num_tuning_cores)
    if name == "random":
        return ms.cost_model.RandomModel()
    raise ValueError(f"unknown cost model {name!r}; choose from {COST_MODELS}")
