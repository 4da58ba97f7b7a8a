"""Fixtures of the alert tests: the real Mosquitto of the sensor tests, and a small site."""

from __future__ import annotations

from tests.sensors.conftest import broker_url, own_broker  # noqa: F401 - shared fixtures
