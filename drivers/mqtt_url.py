"""Where an MQTT broker is: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``.

Used by the controller (its configuration names the broker) and by the simulator (``--mqtt-url``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from parkctl.errors import ConfigError

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> BrokerUrl:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``; ConfigError in one line otherwise."""
    bad = f"--mqtt-url {re.sub(r'://.*@', '://***@', url)!r}: "  # never echo a password
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(bad + f"{exc} (expected mqtt://host:port or mqtts://host:port)") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(bad + "scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ConfigError(bad + "no host (expected mqtt://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(bad + "unexpected path, query or fragment (expected mqtt://host:port)")
    if port == 0:
        raise ConfigError(bad + "port must be 1-65535")
    return BrokerUrl(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
