"""Shared test setup: deterministic torch, few threads, hypothesis profile for CI."""

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(int(os.environ.get("LAS_TEST_THREADS", "1")))
settings.register_profile(
    "las", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("las")
