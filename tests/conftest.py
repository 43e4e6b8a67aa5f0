"""Fixtures shared by every test package. Keep them generic; put package-specific ones next to the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parkctl.errors import BrokerUnavailable
from sim.broker import PrivateMosquitto


@pytest.fixture
def mosquitto_broker() -> Iterator[PrivateMosquitto]:
    """A private Mosquitto on a free loopback port, fresh for each test.

    ``broker.stop()`` / ``broker.start()`` (or ``await broker.astop()`` / ``astart()``) restart it on
    the same port with its persistence file, for broker-restart tests. Skips when mosquitto is absent.
    """
    try:
        broker = PrivateMosquitto()
        broker.start()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        broker.close()
