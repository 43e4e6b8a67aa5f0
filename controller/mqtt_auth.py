"""Turn the ``mqtt`` section into connection settings: read the secret, build the TLS context.

Done once, at start-up and by ``check-config``, so a missing password file, an unset variable or an
unreadable CA is one clear :class:`ConfigError` naming the field, never a reconnect loop. The password
is read from ``password_file`` (first line; a world-readable file is warned about) or from the
environment variable ``password_env``; the configuration file itself never holds it.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping
from pathlib import Path

from controller.config import MqttConfig
from drivers.mqtt_session import MqttSessionSettings
from drivers.mqtt_tls import TlsFiles
from drivers.mqtt_url import parse_mqtt_url
from parkctl.errors import ConfigError

log = logging.getLogger(__name__)


def read_password(config: MqttConfig, environ: Mapping[str, str]) -> str | None:
    """The broker password from ``password_file`` or ``password_env``; None when neither is set."""
    if config.password_env is not None:
        value = environ.get(config.password_env)
        if not value:
            raise ConfigError(f"field 'mqtt.password_env': environment variable {config.password_env} is not set")
        return value
    if config.password_file is None:
        return None
    path = Path(config.password_file)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"field 'mqtt.password_file': cannot read {str(path)!r}: {exc}") from None
    if mode & stat.S_IROTH:
        log.warning("mqtt.password_file %s is readable by every user: chmod 0600 (or 0640 for a group)", path)
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"field 'mqtt.password_file': {str(path)!r} is empty")
    return password


def session_settings(config: MqttConfig, environ: Mapping[str, str]) -> MqttSessionSettings:
    """What every MQTT user of the controller connects with (``**settings.options(client_id)``)."""
    url = parse_mqtt_url(config.url)
    tls = None
    if url.tls:
        t = config.tls
        files = TlsFiles() if t is None else TlsFiles(
            ca_file=Path(t.ca_file) if t.ca_file else None, cert_file=Path(t.cert_file) if t.cert_file else None,
            key_file=Path(t.key_file) if t.key_file else None, check_hostname=t.check_hostname,
        )  # fmt: skip
        tls = files.context("mqtt.tls")
    return MqttSessionSettings(url.host, url.port, username=config.username or url.username,
                               password=read_password(config, environ), tls_context=tls)  # fmt: skip
