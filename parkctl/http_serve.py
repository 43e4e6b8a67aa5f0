"""A small HTTP endpoint served from a daemon thread (metrics, DR events): its handle and bind errors."""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from typing import Protocol

from parkctl.errors import ParkError


class _Server(Protocol):
    def shutdown(self) -> None: ...
    def server_close(self) -> None: ...


@dataclass
class ServedHttp:
    """A running endpoint; ``port`` is the bound one (useful with port 0)."""

    host: str
    port: int
    path: str
    _httpd: _Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def bind_error(what: str, host: str, port: int, exc: OSError) -> ParkError:
    """One line naming what could not be served where, and why."""
    why = "port already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
    return ParkError(f"cannot serve {what} on {host}:{port}: {why}")
