"""Shared test setup: deterministic torch, few threads, hypothesis profile for CI, and no
test that depends on the CPU it runs on.

The suite runs on machines of several kinds (AVX2-only, AVX-512 AMD and Intel). What the
predictor reads off the machine (``profiles.read_machine``: cpuinfo, caches, cores) is
replaced by a recorded machine (``tests/machines.py``), a calibrated profile in the user's
cache is never seen (``LAS_HOME`` is a fresh folder), and asking for the live host profile
itself (``get_hardware("host")``, ``host_profile()``, ``nominal_host()``) fails the test with
the way out: build a profile from a recorded machine (the ``cpu_profile`` fixture), or mark
the test ``@pytest.mark.live_host`` when what it asserts holds on every CPU.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from las_compiler import predictor
from las_compiler.predictor import profiles

from .machines import RECORDED, TEST_MACHINE
from .tiers import FULL_MATRIX

torch.set_num_threads(int(os.environ.get("LAS_TEST_THREADS", "1")))
settings.register_profile(
    "las", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("las")


class LiveHostRead(AssertionError):
    """A test read the live host's hardware profile without fixing it."""


def _refuse(name):
    def refuse(*_args, **_kwargs):
        raise LiveHostRead(
            f"{name}() reads the hardware profile of the CPU this test runs on, so the test's "
            "outcome would depend on the machine: use the cpu_profile fixture (a recorded "
            "machine, tests/machines.py), or mark the test @pytest.mark.live_host if what it "
            "asserts holds on every CPU")
    return refuse


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "live_host: the test may read the live host's hardware profile (what it "
        "asserts holds on every CPU)")
    config.addinivalue_line(
        "markers", "full_matrix: opt-in tier, run with LAS_FULL_MATRIX=1 (the default suite "
        "keeps a covering subset within its 10-minute budget)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="opt-in tier: LAS_FULL_MATRIX=1 scripts/test.sh runs it")
    for item in items:
        if item.get_closest_marker("full_matrix") and not FULL_MATRIX:
            item.add_marker(skip)
        # scripts/test.sh runs pytest-xdist with --dist loadgroup: tests spread one by one
        # over the workers, except a file's tests that share a module-scoped fixture (a
        # compiled network), which stay together so that it is built once
        if _shares_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


_GROUPING_LOST: str | None = None


def pytest_collection_finish(session):
    """On an xdist worker with --dist loadgroup, a grouped test's node id ends in ``@group``;
    pytest 9.2 ignores the way pytest-xdist 3.8 sets it, and every shared compile then ran
    once per worker, silently (hence ``pytest<9.2`` in pyproject.toml)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:  # each grouped test fails with this (an error raised here would be lost)
        global _GROUPING_LOST
        _GROUPING_LOST = (
            f"pytest-xdist did not group {len(lost)} tests that share a module fixture: pytest "
            f"{pytest.__version__} and this pytest-xdist do not work together; install the "
            f"versions pyproject.toml asks for")


def _shares_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.fixture(autouse=True)
def _no_live_host(request, monkeypatch, tmp_path_factory):
    if _GROUPING_LOST and request.node.get_closest_marker("xdist_group"):
        pytest.fail(_GROUPING_LOST)
    monkeypatch.setenv("LAS_HOME", str(tmp_path_factory.mktemp("las-home")))
    if request.node.get_closest_marker("live_host"):
        return
    monkeypatch.setattr(profiles, "read_machine", lambda: TEST_MACHINE)
    for name in ("host_profile", "nominal_host"):
        monkeypatch.setattr(profiles, name, _refuse(name))
    monkeypatch.setattr(predictor, "host_profile", _refuse("host_profile"))


@pytest.fixture(params=sorted(RECORDED))
def recorded_machine(request):
    """Each recorded kind of machine (tests/machines.py)."""
    return RECORDED[request.param]


@pytest.fixture
def cpu_profile():
    """The nominal profile of a recorded machine: ``cpu_profile("sapphire_rapids")``."""
    return lambda kind="zen3_avx2": profiles.cpu_profile(RECORDED[kind])
