"""Kernel-test fixtures: the host target, built once per session."""

import pytest

from las_compiler.target import host_target


@pytest.fixture(scope="session")
def target():
    return host_target()
