"""DR events over a real private Mosquitto: `parkctl dr send` against the controller's DR listener."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from controller.store import Store, StoreSettings
from dr.cli import EXIT_ACCEPTED, EXIT_NO_ACK, EXIT_REJECTED, run_send
from dr.config import DrConfig, ProgrammeConfig
from dr.manager import DrManager
from dr.mqtt import DrMqtt, sender_endpoint
from drivers import topics as tp
from parkctl.cli import build_parser
from parkctl.clock import SimClock
from parkctl.errors import ConfigError
from sim.broker import PrivateMosquitto

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 16, 12, 0, tzinfo=TZ)
SITE = "zixing-pilot"


@pytest.fixture
async def listener(mosquitto_broker: PrivateMosquitto) -> AsyncIterator[DrMqtt]:
    clock = SimClock(NOW)
    config = DrConfig(programmes={"hunan-peak": ProgrammeConfig(price_cny_per_kwh=1.5, penalty_cny_per_kwh=3)})
    with Store.open(":memory:", clock, StoreSettings(checkpoint_s=None)) as store:
        manager = DrManager(config, store, capacity_fn=lambda a, b: 1200.0)
        async with DrMqtt(mosquitto_broker.host, mosquitto_broker.port, site=SITE, manager=manager,
                          clock=clock) as dr:  # fmt: skip
            await dr.wait_connected(timeout_s=5)
            yield dr


async def send(broker: PrivateMosquitto, *extra: str, timeout: float = 5.0) -> int:
    args = build_parser().parse_args(["dr", "send", "--mqtt-url", f"mqtt://{broker.host}:{broker.port}",
                                      "--site", SITE, "--timeout", str(timeout), *extra])  # fmt: skip
    return await run_send(args)


def printed_ack(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])  # type: ignore[no-any-return]


def test_topics() -> None:
    assert tp.dr_event_topic(SITE) == "park/zixing-pilot/dr/event"
    assert tp.dr_ack_topic(SITE) == "park/zixing-pilot/dr/ack"
    assert tp.SCHEME["dr_event"].qos == 1 and not tp.SCHEME["dr_ack"].retain


async def test_send_cap_event_and_get_the_ack(
    mosquitto_broker: PrivateMosquitto, listener: DrMqtt, capsys: pytest.CaptureFixture[str]
) -> None:
    start = (NOW + timedelta(hours=7)).isoformat()
    code = await send(mosquitto_broker, "--cap-kw", "3000", "--start", start, "--duration", "1h",
                      "--programme", "hunan-peak", "--id", "evt-1", "--notice", "DAY_AHEAD")  # fmt: skip
    ack = printed_ack(capsys)
    assert code == EXIT_ACCEPTED
    assert ack == {"id": "evt-1", "modificationNumber": 0, "status": "accepted", "optIn": True, "reason": "ok",
                   "capacityKw": 1200.0, "ts": NOW.isoformat()}  # fmt: skip
    assert listener.manager.import_cap_at(NOW + timedelta(hours=7, minutes=30)) == 3000
    # the grid company calls it off
    assert await send(mosquitto_broker, "--cancel", "evt-1", "--modification", "1") == EXIT_ACCEPTED
    assert printed_ack(capsys)["status"] == "cancelled"
    assert listener.manager.import_cap_at(NOW + timedelta(hours=7, minutes=30)) is None


async def test_rejections_come_back_as_exit_1(
    mosquitto_broker: PrivateMosquitto, listener: DrMqtt, capsys: pytest.CaptureFixture[str]
) -> None:
    start = (NOW + timedelta(hours=1)).isoformat()
    code = await send(mosquitto_broker, "--cap-kw", "3000", "--start", start, "--duration", "PT30M",
                      "--programme", "jiangsu", "--id", "evt-2")  # fmt: skip
    assert code == EXIT_REJECTED and "unknown programme" in str(printed_ack(capsys)["reason"])


async def test_malformed_payload_is_counted_and_refused_by_id(
    mosquitto_broker: PrivateMosquitto, listener: DrMqtt, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b'{"no id": true}')
    with pytest.raises(ConfigError, match="no readable event id"):  # the tool will not wait for nobody
        await send(mosquitto_broker, "--file", str(garbage))
    async with sender_endpoint(mosquitto_broker.url).client() as raw:  # so send it by hand
        await raw.publish(tp.dr_event_topic(SITE), b'{"no id": true}', qos=1)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({
        "objectType": "EVENT", "programID": "hunan-peak", "id": "evt-3", "modificationNumber": 2,
        "notice": "REAL_TIME", "createdDateTime": NOW.isoformat(),
        "intervalPeriod": {"start": NOW.isoformat(), "duration": "half an hour"},
        "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [2000]}]}],
    }))  # fmt: skip
    assert await send(mosquitto_broker, "--file", str(broken)) == EXIT_REJECTED
    ack = printed_ack(capsys)
    assert (ack["id"], ack["modificationNumber"], ack["status"]) == ("evt-3", 2, "rejected")
    assert str(ack["reason"]).startswith("bad_duration")
    # events are handled in order: by the time evt-3 was answered, the garbage had been counted too
    assert listener.malformed == {"missing_field": 1, "bad_duration": 1}  # no objectType; the duration
    assert listener.acks_sent == 1


async def test_no_listener_means_no_ack(mosquitto_broker: PrivateMosquitto) -> None:
    start = (NOW + timedelta(hours=1)).isoformat()
    code = await send(mosquitto_broker, "--cap-kw", "3000", "--start", start, "--duration", "15min", timeout=0.3)
    assert code == EXIT_NO_ACK
