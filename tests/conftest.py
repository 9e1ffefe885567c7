"""Shared test setup: a time scale for sleeps, and start methods to run process tests under."""

from __future__ import annotations

import os

import pytest

#: Sleeps in tests and examples are multiplied by this (SHOAL_TIME_SCALE), so the suite stays
#: fast; liveness bounds are generous ceilings, never tight.
TIME_SCALE = float(os.environ.get("SHOAL_TIME_SCALE", "0.05"))


def scaled(seconds: float) -> float:
    return seconds * TIME_SCALE


@pytest.fixture(params=["fork", "spawn", "forkserver"])
def start_method(request: pytest.FixtureRequest) -> str:
    return str(request.param)
