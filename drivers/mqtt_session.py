"""One MQTT broker connection kept up by a reconnect loop: the part every MQTT class of the project shares.

:class:`MqttSession` is the base of :class:`drivers.mqtt_load.MqttLoadBus`,
:class:`controller.telemetry.MqttTelemetry` and :class:`sim.mqtt_devices.SimMqttLoad`. It owns the
reconnect loop (capped exponential backoff, reset after each connect), the connected event, the count
of reconnects and the start/stop/``async with`` lifecycle; a subclass sets each connection up
(:meth:`MqttSession._on_connect`) and serves it until it drops (:meth:`MqttSession._serve`).

A fresh ``aiomqtt.Client`` is built for each connection attempt: a reused 2.x client keeps a resolved
``_connected`` future after an unexpected disconnect (aiomqtt issues #288, #269). With a fixed
identifier and clean_session off the broker keeps the session (subscriptions, queued QoS-1 messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypedDict

import aiomqtt

log = logging.getLogger(__name__)
# Small QoS-1 packets otherwise meet Nagle + delayed ACK: ~40 ms per hop, ~90 ms per command round trip
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class MqttOptions(TypedDict, total=False):
    """The connection keywords every MQTT class takes besides host and port."""

    client_id: str | None  # None: the class's own fixed default
    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None
    keepalive_s: int


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """Where and how to connect; :meth:`client` builds the fresh client for one attempt."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = None
    keepalive_s: int = 15
    timeout_s: float = 5.0
    clean_session: bool | None = False  # None: the library's default (a clean session)
    will: aiomqtt.Will | None = None

    @classmethod
    def of(cls, host: str, port: int, options: MqttOptions, default_id: str, **fixed: Any) -> MqttEndpoint:
        """From a class's :class:`MqttOptions` keywords; ``fixed`` sets timeout_s, clean_session, will."""
        unknown = options.keys() - MqttOptions.__annotations__.keys()
        if unknown:
            raise TypeError(f"unexpected keyword arguments {sorted(unknown)}")
        o = options
        return cls(host, port, o.get("client_id") or default_id, o.get("username"), o.get("password"),
                   o.get("tls_context"), o.get("keepalive_s", 15), **fixed)  # fmt: skip

    def client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, clean_session=self.clean_session,
            keepalive=self.keepalive_s, username=self.username, password=self.password,
            tls_context=self.tls_context, timeout=self.timeout_s, socket_options=NODELAY, will=self.will,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MqttSessionSettings:
    """Where the broker is and how to log in, resolved once (secret read, TLS context built).

    Every MQTT user of one configuration (load bus, telemetry, DR subscriber, check-config) takes the
    same object, so none can forget TLS or the credentials: pass ``**settings.options(client_id)`` to a
    session class, or call :meth:`client` for a one-off connection. The password never shows in a repr.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = None

    @property
    def tls(self) -> bool:
        return self.tls_context is not None

    def options(self, client_id: str | None = None) -> MqttOptions:
        """The :class:`MqttOptions` keywords (``client_id`` None: the class's own default)."""
        return MqttOptions(client_id=client_id, username=self.username, password=self.password,
                           tls_context=self.tls_context)  # fmt: skip

    def client(self, client_id: str, *, timeout_s: float = 5.0, clean_session: bool = True) -> aiomqtt.Client:
        """A plain ``aiomqtt.Client`` with these settings, for short-lived connections."""
        return aiomqtt.Client(
            self.host, self.port, identifier=client_id, clean_session=clean_session, username=self.username,
            password=self.password, tls_context=self.tls_context, timeout=timeout_s, socket_options=NODELAY,
        )  # fmt: skip

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


# CONNACK codes of a refused login: MQTT 3.1.1 4 and 5, and what paho 2 maps them to (MQTT 5 134, 135)
LOGIN_REFUSED_CODES = frozenset({4, 5, 134, 135})


def login_refused(exc: BaseException) -> bool:
    """True when the broker answered CONNECT with "bad user name or password" or "not authorised"."""
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    return isinstance(exc, aiomqtt.MqttCodeError) and code in LOGIN_REFUSED_CODES


def describe_failure(exc: BaseException) -> str:
    """One line an operator can act on: a refused login and a failed TLS handshake say what to check."""
    text = str(exc) or type(exc).__name__
    if login_refused(exc):
        return f"broker refused the login ({text}): check mqtt.username and password_file/password_env"
    if "SSL" in text or "certificate" in text.lower():
        return f"TLS failed ({text}): check mqtt.tls.ca_file and the broker certificate's host name"
    return text


class MqttSession:
    """A broker connection kept up in a background task; subclass and implement :meth:`_serve`.

    ``label`` starts the log lines ("MQTT bus"); ``logger`` is the subclass's module logger. Setting
    ``_closing`` ends the loop once the current connection is over, without reconnecting.
    """

    def __init__(
        self, endpoint: MqttEndpoint, *, backoff_s: tuple[float, float], label: str, task_name: str,
        logger: logging.Logger = log,
    ) -> None:  # fmt: skip
        self._endpoint = endpoint
        self._backoff_s = backoff_s
        self._label, self._task_name, self._log = label, task_name, logger
        self._client: aiomqtt.Client | None = None  # the live connection's client, else None
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []  # the connection loop first; a subclass may add more
        self._closing = False
        self._reconnects = 0
        self._last_error: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def reconnects(self) -> int:
        """Connections after the first one."""
        return self._reconnects

    @property
    def last_error(self) -> str | None:
        """Why the last connection attempt failed or the last connection dropped (None: never)."""
        return self._last_error

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if not self._tasks or self._tasks[0].done():
            self._closing = False
            self._tasks = [asyncio.create_task(self._run(), name=self._task_name)]

    async def stop(self) -> None:
        """Publish the last will ourselves (a clean disconnect does not fire it), then end every task."""
        client, will = self._client, self._endpoint.will
        if client is not None and will is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(will.topic, will.payload, qos=will.qos, retain=will.retain, timeout=2)
        await self._cancel()

    async def _cancel(self) -> None:
        tasks, self._tasks = self._tasks, []
        await asyncio.gather(*(cancel_and_wait(t) for t in tasks))

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- for subclasses ------------------------------------------------------------------------------
    async def _on_connect(self, client: aiomqtt.Client) -> None:
        """Set a new connection up (subscribe, say "online") before it counts as connected."""

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Use the connection until it drops (raise) or the session should disconnect cleanly (return)."""
        raise NotImplementedError

    def _on_drop(self, exc: Exception, delay: float, failures: int) -> None:
        """Log a failed attempt or lost connection: a warning once per outage, then debug."""
        level = logging.ERROR if login_refused(exc) else logging.DEBUG if failures else logging.WARNING
        self._log.log(level, "%s %s:%d: %s; retrying in %.2f s", self._label, self._endpoint.host,
                      self._endpoint.port, describe_failure(exc), delay)  # fmt: skip

    # -- the loop ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay, connects, failures = self._backoff_s[0], 0, 0
        while not self._closing:
            client = self._endpoint.client()
            try:
                async with client:
                    await self._on_connect(client)
                    self._client = client
                    self._connected.set()
                    connects += 1
                    self._reconnects += connects > 1
                    ep = self._endpoint
                    self._log.info("%s connected to %s:%d as %s after %d failed attempts",
                                   self._label, ep.host, ep.port, ep.client_id, failures)  # fmt: skip
                    delay, failures = self._backoff_s[0], 0
                    await self._serve(client)
            except (aiomqtt.MqttError, TimeoutError) as exc:
                self._last_error = describe_failure(exc)
                if login_refused(exc):  # a wrong password does not fix itself: do not hammer the broker
                    delay = self._backoff_s[1]
                self._on_drop(exc, delay, failures)
                failures += 1
            except Exception:  # a bug in a subclass must not end the reconnect loop for good
                self._log.exception("%s: unexpected error; reconnecting in %.2f s", self._label, delay)
                failures += 1
            finally:
                self._client = None
                self._connected.clear()
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_s[1])


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel until the task is really done: on 3.11, ``asyncio.wait_for`` (used inside aiomqtt) can
    swallow a cancellation that arrives just as the awaited operation completes."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s ended with an error", task.get_name(), exc_info=task.exception())
