"""The TLS side of an MQTT connection: which CA to trust, and an optional client certificate.

Built into an ``ssl.SSLContext`` once at start-up (``aiomqtt.Client(tls_context=...)``), so a missing
or unreadable file is a configuration error before any connection is tried, not a retry loop. The
server certificate is always verified; its host name is checked unless ``check_hostname`` is off
(a broker reached by an address its certificate does not name; the CA still has to have signed it).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from parkctl.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """``ca_file`` None trusts the system store; ``cert_file`` and ``key_file`` give mutual TLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    def context(self, where: str = "mqtt.tls") -> ssl.SSLContext:
        """A client context (TLS 1.2 or later); ConfigError naming the field when a file will not load."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = self.check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"field '{where}.ca_file': cannot load {str(self.ca_file)!r}: {exc}") from None
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(f"field '{where}': cert_file and key_file go together (mutual TLS)")
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"field '{where}.cert_file': cannot load the client certificate: {exc}") from None
        return ctx
