"""Fixtures shared by every test package. Keep them generic; put package-specific ones next to the tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from parkctl.errors import BrokerUnavailable
from sim.broker import PrivateMosquitto

# The suite gates every commit, so it draws the same examples on every machine and a failure seen in CI
# reproduces anywhere. Look for new ones with `scripts/test --hypothesis-profile=explore` (or
# HYPOTHESIS_PROFILE=explore); a counterexample found that way goes into the test as an @example.
settings.register_profile("gate", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))


@contextlib.contextmanager
def private_broker() -> Iterator[PrivateMosquitto]:
    """A private Mosquitto on a free loopback port, closed on exit; skips the test when mosquitto is absent."""
    try:
        broker = PrivateMosquitto()
        broker.start()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def mosquitto_broker() -> Iterator[PrivateMosquitto]:
    """A private Mosquitto on a free loopback port, fresh for each test.

    ``broker.stop()`` / ``broker.start()`` (or ``await broker.astop()`` / ``astart()``) restart it on
    the same port with its persistence file, for broker-restart tests. Skips when mosquitto is absent.
    """
    with private_broker() as broker:
        yield broker
