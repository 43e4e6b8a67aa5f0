"""The mqtt section's secrets and TLS: refused in clear, read from a file or the environment, checked early."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
import yaml

from controller.config import MqttConfig, MqttTlsConfig, load_config
from controller.mqtt_auth import session_settings
from drivers.mqtt_url import parse_mqtt_url
from parkctl.errors import ConfigError
from tests.tls_broker import make_certs


def park(tmp_path: Path, mqtt: dict[str, object], **over: object) -> Path:
    data = {
        "site": {"name": "test-park"},
        "grid": {"import_cap_kw": 1000, "export_cap_kw": 0},
        "modbus": [{"id": "meter", "kind": "meter"}],
        "mqtt": mqtt,
        **over,
    }
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"url": "mqtts://h", "username": "u", "password": "hunter2"},
         "field 'mqtt.password': .*clear-text password is not accepted: use password_file or password_env"),
        ({"url": "mqtts://u:hunter2@h"}, "field 'mqtt.url': .*no password in the url: use mqtt.password_file"),
        ({"url": "mqtts://h", "password_env": "X"}, "a password needs a username"),
        ({"url": "mqtts://h", "username": "u", "password_env": "X", "password_file": "/f"}, "not both"),
        ({"url": "mqtt://h", "tls": {}}, "use mqtts://"),
        ({"url": "mqtts://h", "tls": {"cert_file": "/c.pem"}}, "cert_file and key_file go together"),
        ({"url": "mqtts://u@h", "username": "v"}, "differs from the url"),
        ({"url": "mqtts://h", "username": "u", "password_env": "not a name"}, "field 'mqtt.password_env'"),
    ],
)  # fmt: skip
def test_bad_mqtt_sections_name_the_field(tmp_path: Path, mqtt: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(park(tmp_path, mqtt))
    assert "hunter2" not in str(err.value)


def test_mqtts_defaults_to_8883_with_verified_tls() -> None:
    assert parse_mqtt_url("mqtts://broker.example").port == 8883
    s = session_settings(MqttConfig(url="mqtts://broker.example"), {})
    assert (s.host, s.port, s.username, s.password) == ("broker.example", 8883, None, None)
    assert s.tls_context is not None and s.tls_context.check_hostname
    assert s.tls_context.verify_mode == ssl.CERT_REQUIRED
    assert s.tls_context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert session_settings(MqttConfig(url="mqtt://h"), {}).tls_context is None
    off = MqttConfig(url="mqtts://h", tls=MqttTlsConfig(check_hostname=False))
    assert not session_settings(off, {}).tls_context.check_hostname  # type: ignore[union-attr]


def test_password_from_env_or_file(tmp_path: Path) -> None:
    env = MqttConfig(url="mqtts://ctl@h", password_env="PARKCTL_MQTT_PASSWORD")
    s = session_settings(env, {"PARKCTL_MQTT_PASSWORD": "from-env"})
    assert (s.username, s.password) == ("ctl", "from-env")
    assert "from-env" not in repr(s) and "from-env" not in str(s)
    with pytest.raises(ConfigError, match=r"field 'mqtt\.password_env': environment variable PARKCTL_MQTT_PASSWORD"):
        session_settings(env, {})
    secret = tmp_path / "mqtt-password"
    secret.write_text("from-file\n")
    os.chmod(secret, 0o600)
    cfg = MqttConfig(url="mqtts://h", username="ctl", password_file=str(secret))
    assert session_settings(cfg, {}).password == "from-file"
    secret.write_text("")
    with pytest.raises(ConfigError, match=r"field 'mqtt\.password_file': .* is empty"):
        session_settings(cfg, {})
    missing = MqttConfig(url="mqtts://h", username="ctl", password_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"field 'mqtt\.password_file': cannot read"):
        session_settings(missing, {})


def test_tls_files_load_or_name_the_field(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    mutual = MqttTlsConfig(ca_file=str(certs.ca), cert_file=str(certs.client_cert), key_file=str(certs.client_key))
    assert session_settings(MqttConfig(url="mqtts://h", tls=mutual), {}).tls
    bad_ca = MqttTlsConfig(ca_file=str(tmp_path / "missing.crt"))
    with pytest.raises(ConfigError, match=r"field 'mqtt\.tls\.ca_file'"):
        session_settings(MqttConfig(url="mqtts://h", tls=bad_ca), {})
    wrong_key = MqttTlsConfig(ca_file=str(certs.ca), cert_file=str(certs.client_cert), key_file=str(certs.server_key))
    with pytest.raises(ConfigError, match=r"field 'mqtt\.tls\.cert_file'"):
        session_settings(MqttConfig(url="mqtts://h", tls=wrong_key), {})


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ({"id": "m2", "kind": "pv", "rated_kw": 10, "writes": ["battery_power"]}, "a pv device cannot take"),
        ({"id": "b", "kind": "storage", "writes": ["pv_limit"]}, "a storage device cannot take"),
        ({"id": "b", "kind": "storage", "min_pv_limit_pct": 10}, "pv devices only"),
        ({"id": "p", "kind": "pv", "rated_kw": 10, "max_charge_kw": 10}, "storage devices only"),
        ({"id": "b", "kind": "storage", "max_discharge_kw": -1}, "field 'modbus.1.max_discharge_kw'"),
    ],
)
def test_write_allow_list_fits_the_device_kind(tmp_path: Path, device: dict[str, object], message: str) -> None:
    path = park(tmp_path, {"url": "mqtt://h"}, modbus=[{"id": "meter", "kind": "meter"}, device])
    with pytest.raises(ConfigError, match=message):
        load_config(path)
