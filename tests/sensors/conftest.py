"""A real Mosquitto broker for the MQTT tests, started by ``scripts/mosquitto.sh``.

``make test`` starts one and sets ``URBANSEC_TEST_MQTT_URL``; without it each session starts
its own (the Debian package must be installed). The broker-restart test always starts its own,
since it stops and starts it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mosquitto.sh"


@dataclass
class Mosquitto:
    url: str
    directory: str

    def halt(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "halt", self.directory], check=True)

    def resume(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "resume", self.directory], check=True)

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", self.directory], check=True)


def start_mosquitto() -> Mosquitto:
    if not Path("/usr/sbin/mosquitto").exists():
        if os.environ.get("URBANSEC_REQUIRE_MQTT"):
            raise RuntimeError("URBANSEC_REQUIRE_MQTT is set but mosquitto is not installed")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; make test does)")
    found = subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True,
                           text=True).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in found.splitlines()
                   if line.startswith("export "))
    return Mosquitto(exports["URBANSEC_TEST_MQTT_URL"], exports["URBANSEC_TEST_MQTT_DIR"])


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    if os.environ.get("URBANSEC_TEST_MQTT_URL"):
        yield os.environ["URBANSEC_TEST_MQTT_URL"]
        return
    broker = start_mosquitto()
    yield broker.url
    broker.stop()


@pytest.fixture
def own_broker() -> Iterator[Mosquitto]:
    broker = start_mosquitto()
    yield broker
    broker.stop()
