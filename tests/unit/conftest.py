"""Shared fixtures for the unit tests: the in-memory world and the hypothesis profile."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fakes import World, make_world
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps caches in ./.hypothesis by default: keep them out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "kassa-unit-hypothesis")

# No deadline (no timing assertions), no example database written into the repository.
settings.register_profile(
    "unit",
    deadline=None,
    database=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("unit")


@pytest.fixture
def world() -> World:
    """Billing wired to a FakeStore, FakeGateway, ListPublisher and a FixedClock at START."""
    return make_world()
