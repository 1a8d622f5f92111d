"""``las tune``: tune a model's kernels for a target into ``tuning_logs/<target>/``."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def run_tune(model_name: str, snet, rate: float, input_size, batch: int, target_spec: str,
             trials: int, log_dir: str | None, cost_model: str, rpc_tracker: str | None,
             rpc_key: str | None, seed: int, log=lambda m: print(m, file=sys.stderr)):
    """Returns (results, log directory, seconds)."""
    import torch

    from .models import build_model, calibrate
    from .target import resolve_target
    from .tuning import REPO_LOGS, log_name
    from .tuning.cost_model import COST_MODELS
    from .tuning.tasks import extract_tasks, lowered_module
    from .tuning.tune import tune_tasks

    if cost_model not in COST_MODELS:
        raise ValueError(f"unknown cost model {cost_model!r}; choose from {COST_MODELS}")
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    target = resolve_target(target_spec)
    if "cpu" not in target.keys:
        raise ValueError(f"tuning needs a CPU target here (no GPU on this machine); got "
                         f"{target.kind.name}")
    start = time.perf_counter()
    model = build_model(model_name, snet).eval()
    x = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(seed))
    calibrate(model, rate, x)
    tasks = extract_tasks(lowered_module(model, x, target), target, rate)
    log(f"{len(tasks)} tunable kernels in {model_name} S_net={snet} ({target})")
    directory = Path(log_dir) if log_dir else REPO_LOGS / log_name(target)
    results = tune_tasks(tasks, target, directory, trials, cost_model,
                         rpc_tracker=rpc_tracker, rpc_key=rpc_key, seed=seed, log=log)
    return results, directory, time.perf_counter() - start
