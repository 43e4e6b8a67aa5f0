"""`parkctl dr send` as the grid company's account, over TLS, to a controller behind the shipped ACL."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from controller.store import Store, StoreSettings
from dr.cli import EXIT_ACCEPTED, EXIT_NO_ACK, run_send
from dr.config import DrConfig, ProgrammeConfig
from dr.manager import DrManager
from dr.mqtt import DrMqtt
from drivers.mqtt_session import MqttSessionSettings
from drivers.mqtt_tls import TlsFiles
from parkctl.cli import build_parser
from parkctl.clock import SimClock
from tests.tls_broker import USERS, TlsMosquitto
from tests.tls_broker import tls_broker as tls_broker  # the fixture

SITE = "zixing-pilot"  # as in deploy/mosquitto/acl.example
NOW = datetime(2026, 7, 16, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


async def test_the_grid_company_account_sends_over_tls_and_gets_the_ack(
    tls_broker: TlsMosquitto, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl = MqttSessionSettings(tls_broker.host, tls_broker.port, username="parkctl", password=USERS["parkctl"],
                              tls_context=TlsFiles(ca_file=tls_broker.certs.ca).context())  # fmt: skip
    config = DrConfig(programmes={"hunan-peak": ProgrammeConfig(price_cny_per_kwh=1.5, penalty_cny_per_kwh=3)})
    monkeypatch.setenv("GRIDCO_PASSWORD", USERS["gridco"])
    base = ["dr", "send", "--mqtt-url", f"mqtts://{tls_broker.host}:{tls_broker.port}", "--site", SITE,
            "--ca-file", str(tls_broker.certs.ca), "--cap-kw", "3000", "--start", "2026-07-16T19:00:00+08:00",
            "--duration", "1h", "--programme", "hunan-peak", "--notice", "DAY_AHEAD", "--timeout", "5"]  # fmt: skip
    with Store.open(":memory:", SimClock(NOW), StoreSettings(checkpoint_s=None)) as store:
        manager = DrManager(config, store, capacity_fn=lambda a, b: 4000.0)
        async with DrMqtt(ctl.host, ctl.port, site=SITE, manager=manager, clock=SimClock(NOW),
                          **ctl.options("parkctl-dr")) as dr:  # fmt: skip
            await dr.wait_connected(timeout_s=5)
            args = build_parser().parse_args([*base, "--username", "gridco", "--password-env", "GRIDCO_PASSWORD"])
            assert await run_send(args) == EXIT_ACCEPTED
            ack = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert ack["status"] == "accepted" and ack["optIn"] is True
            # a load device's account may not publish events: the broker drops it, nobody answers
            monkeypatch.setenv("L1_PASSWORD", USERS["L1"])
            args = build_parser().parse_args([*base, "--username", "L1", "--password-env", "L1_PASSWORD",
                                              "--timeout", "1"])  # fmt: skip
            assert await run_send(args) == EXIT_NO_ACK
            assert len(manager.records) == 1
