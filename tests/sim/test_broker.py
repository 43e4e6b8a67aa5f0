"""Broker selection: URLs, the private Mosquitto, restarts on the same port, clear errors."""

from __future__ import annotations

import socket

import paho.mqtt.publish as publish
import paho.mqtt.subscribe as subscribe
import pytest

from parkctl.errors import BrokerUnavailable, ConfigError
from sim.broker import BrokerUrl, PrivateMosquitto, parse_mqtt_url, select_broker


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local", BrokerUrl("broker.local", 1883)),
        ("mqtt://10.0.0.5:1884", BrokerUrl("10.0.0.5", 1884)),
        ("mqtts://broker.local", BrokerUrl("broker.local", 8883, tls=True)),
        ("mqtts://ctl:s%40cret@broker.local:8884/", BrokerUrl("broker.local", 8884, True, "ctl", "s@cret")),
        ("mqtt://[::1]:1883", BrokerUrl("::1", 1883)),
    ],
)
def test_parse_good_urls(url: str, expected: BrokerUrl) -> None:
    assert parse_mqtt_url(url) == expected


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("broker.local:1883", "scheme"),
        ("http://broker.local", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://broker.local:abc", "expected mqtt://host:port"),
        ("mqtt://broker.local:70000", "expected mqtt://host:port"),
        ("mqtt://broker.local:0", "1-65535"),
        ("mqtt://broker.local/topic", "path"),
    ],
)
def test_parse_bad_urls_one_line(url: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mqtt_url(url)
    msg = str(info.value)
    assert hint in msg and "\n" not in msg and msg.startswith("--mqtt-url")


def test_url_str_hides_password() -> None:
    assert str(parse_mqtt_url("mqtts://ctl:secret@h:8883")) == "mqtts://ctl@h:8883"


def test_missing_program_says_what_to_install() -> None:
    with pytest.raises(BrokerUnavailable) as info:
        PrivateMosquitto("/nonexistent/bin/mosquitto")
    msg = str(info.value)
    assert "apt-get install mosquitto" in msg and "--mqtt-url" in msg and "\n" not in msg


def test_port_in_use_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            broker = PrivateMosquitto(port=s.getsockname()[1], start_timeout_s=2)
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))
        with pytest.raises(BrokerUnavailable, match="exited at start"):
            broker.start()
        broker.close()


def test_restart_same_port_keeps_retained_messages(mosquitto_broker: PrivateMosquitto) -> None:
    b = mosquitto_broker
    port = b.port
    publish.single("park/t/retained", b"kept", qos=1, retain=True, hostname=b.host, port=port)
    b.restart()
    assert b.port == port and b.running
    msg = subscribe.simple("park/t/retained", hostname=b.host, port=port)  # type: ignore[no-untyped-call]
    assert msg.payload == b"kept" and msg.retain
    b.stop()
    assert not b.running
    with pytest.raises(OSError), socket.create_connection((b.host, port), timeout=0.5):
        pass


async def test_select_broker() -> None:
    async with select_broker("mqtt://example.invalid:1999") as url:
        assert url == BrokerUrl("example.invalid", 1999)
    try:
        async with select_broker(None) as url:
            assert url.host == "127.0.0.1"
            with socket.create_connection((url.host, url.port), timeout=1):
                pass
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
    with pytest.raises(OSError), socket.create_connection((url.host, url.port), timeout=0.5):
        pass
    with pytest.raises(BrokerUnavailable, match="apt-get install mosquitto"):
        async with select_broker(None, program="/nonexistent/mosquitto"):
            pass
