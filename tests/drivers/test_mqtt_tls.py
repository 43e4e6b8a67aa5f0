"""MQTT over TLS with logins and the shipped ACL, against a real Mosquitto with certificates made here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiomqtt
import pytest

from controller.config import MqttConfig, MqttTlsConfig
from controller.mqtt_auth import session_settings
from drivers import topics as tp
from drivers.mqtt_load import MqttLoadBus
from drivers.mqtt_session import MqttSessionSettings
from drivers.mqtt_tls import TlsFiles
from parkctl.clock import SimClock
from tests.tls_broker import USERS, TlsMosquitto, make_certs, make_passwd, site_acl
from tests.tls_broker import tls_broker as tls_broker  # the fixture

SITE = "zixing-pilot"  # as in deploy/mosquitto/acl.example
T0 = datetime(2026, 7, 15, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def login(broker: TlsMosquitto, user: str | None, password: str | None, ca: Path | None = None) -> MqttSessionSettings:
    ctx = TlsFiles(ca_file=ca or broker.certs.ca).context()
    return MqttSessionSettings(broker.host, broker.port, username=user, password=password, tls_context=ctx)


def as_user(broker: TlsMosquitto, user: str) -> MqttSessionSettings:
    return login(broker, user, USERS[user])


async def eventually(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def device(settings: MqttSessionSettings, load_id: str, ready: asyncio.Event, seen: list[tp.Command]) -> None:
    """A load device: acknowledges every command it receives on its own cmd topic."""
    async with settings.client(f"dev-{load_id}") as c:
        await c.subscribe(tp.load_topic(SITE, load_id, "cmd"), qos=1)
        ready.set()
        async for msg in c.messages:
            cmd = tp.Command.decode(bytes(msg.payload))
            seen.append(cmd)
            ack = tp.Ack(cmd.id, True, "", T0)
            await c.publish(tp.load_topic(SITE, load_id, "ack"), ack.encode(), qos=1)


def bus(settings: MqttSessionSettings, **kw: object) -> MqttLoadBus:
    return MqttLoadBus(settings.host, settings.port, site=SITE, load_ids=("L1", "L2"), clock=SimClock(T0),
                       ack_timeout_s=3.0, **settings.options("parkctl-test"), **kw)  # type: ignore[arg-type]  # fmt: skip


async def test_load_bus_over_tls_with_config_credentials_round_trips_a_command(tls_broker: TlsMosquitto) -> None:
    config = MqttConfig(url=f"mqtts://127.0.0.1:{tls_broker.port}", username="parkctl", password_env="MQTT_PW",
                        tls=MqttTlsConfig(ca_file=str(tls_broker.certs.ca)))  # fmt: skip
    settings = session_settings(config, {"MQTT_PW": USERS["parkctl"]})
    assert settings.tls and "ctl-secret" not in repr(settings)
    ready, seen = asyncio.Event(), list[tp.Command]()
    dev = asyncio.create_task(device(as_user(tls_broker, "L1"), "L1", ready, seen))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        async with bus(settings) as b:
            await b.wait_connected(5)
            outcome = await b.command("L1", "shed")
            assert outcome.acked and outcome.accepted
            assert [c.action for c in seen] == ["shed"]
    finally:
        dev.cancel()
        await asyncio.gather(dev, return_exceptions=True)


async def test_wrong_password_is_refused_and_said_so(
    tls_broker: TlsMosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="drivers.mqtt_load")
    async with bus(login(tls_broker, "parkctl", "not-the-password"), backoff_s=(0.05, 0.2)) as b:
        await eventually(lambda: b.last_error is not None)
        assert not b.connected
        assert b.last_error is not None and "refused the login" in b.last_error
    assert any("refused the login" in r.getMessage() and "password_file" in r.getMessage() for r in caplog.records)
    for user, password in ((None, None), ("L1", "not-the-password"), ("nobody", "x")):
        with pytest.raises(aiomqtt.MqttCodeError, match=r"code:13[45]"):
            async with login(tls_broker, user, password).client("intruder", timeout_s=3):
                pass


async def test_plain_or_untrusting_clients_cannot_connect(tls_broker: TlsMosquitto) -> None:
    plain = MqttSessionSettings(tls_broker.host, tls_broker.port, username="parkctl", password=USERS["parkctl"])
    with pytest.raises(aiomqtt.MqttError):
        async with plain.client("plain", timeout_s=2):
            pass
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):  # trusts another CA only
        untrusting = login(tls_broker, "parkctl", USERS["parkctl"], ca=tls_broker.certs.other_ca)
        async with untrusting.client("x", timeout_s=2):
            pass


async def collect(client: aiomqtt.Client, into: list[tuple[str, bytes]]) -> None:
    async for msg in client.messages:
        into.append((msg.topic.value, bytes(msg.payload)))


async def test_acl_keeps_devices_and_grid_company_to_their_topics(tls_broker: TlsMosquitto) -> None:
    """Denied publishes are dropped by the broker (the PUBACK still comes). Each check ends with an
    allowed message from a later publish to the same subscriber: when that arrived, a forged one
    before it would have too."""
    at_ctl: list[tuple[str, bytes]] = []
    at_l1: list[tuple[str, bytes]] = []
    report = tp.StateReport(T0, 42.0, True, 1).encode()
    ctl_login, l1_login, grid_login = (as_user(tls_broker, u) for u in ("parkctl", "L1", "gridco"))
    async with bus(ctl_login) as b, ctl_login.client("ctl-dr") as ctl, l1_login.client("dev-L1") as l1, \
            grid_login.client("grid") as g:  # fmt: skip
        await b.wait_connected(5)
        await ctl.subscribe(tp.dr_event_topic(SITE), qos=1)
        await l1.subscribe(tp.load_topic(SITE, "L1", "cmd"), qos=1)
        tasks = [asyncio.create_task(collect(ctl, at_ctl)), asyncio.create_task(collect(l1, at_l1))]
        try:
            await l1.publish(tp.load_topic(SITE, "L2", "state"), report, qos=1)  # L1 pretends to be L2
            await l1.publish(tp.dr_event_topic(SITE), b"from L1", qos=1)  # ... and the grid company
            await g.publish(tp.load_topic(SITE, "L1", "state"), report, qos=1)  # gridco pretends to be L1
            await g.publish(tp.load_topic(SITE, "L1", "cmd"), b"shed from gridco", qos=1)  # ... or the controller
            await l1.publish(tp.load_topic(SITE, "L1", "state"), b"garbage ends the bus check", qos=1)
            await g.publish(tp.dr_event_topic(SITE), b"from gridco", qos=1)  # allowed
            await ctl.publish(tp.load_topic(SITE, "L1", "cmd"), b"from parkctl", qos=1)  # allowed
            await eventually(lambda: b.stats.malformed_total == 1 and bool(at_ctl) and bool(at_l1))
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert b.stats.messages == 1 and b.latest_load("L1") is None and b.latest_load("L2") is None
    assert at_ctl == [(tp.dr_event_topic(SITE), b"from gridco")]
    assert at_l1 == [(tp.load_topic(SITE, "L1", "cmd"), b"from parkctl")]


async def test_mutual_tls_needs_a_client_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    broker = TlsMosquitto(tmp_path, certs, make_passwd(tmp_path / "passwd", USERS), site_acl(tmp_path / "acl"),
                          require_certificate=True)  # fmt: skip
    broker.start()
    try:
        with_cert = TlsFiles(certs.ca, certs.client_cert, certs.client_key).context()
        ok = MqttSessionSettings(broker.host, broker.port, "parkctl", USERS["parkctl"], with_cert)
        async with ok.client("mtls", timeout_s=3) as c:
            await c.publish(tp.controller_status_topic(SITE), tp.ONLINE, qos=1)
        with pytest.raises(aiomqtt.MqttError):
            async with as_user(broker, "parkctl").client("no-cert", timeout_s=3):
                pass
    finally:
        broker.stop()
