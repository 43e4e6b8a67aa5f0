"""The simulated grid company: it sends a scenario's demand-response calls during the day.

Each call (:class:`sim.dr_calls.GridCall`) is published as an OpenADR-3-shaped event on the park's
``dr/event`` topic at its ``sent_at`` instant, through the real broker, exactly as ``parkctl dr send``
would; a call with ``cancel_at`` is cancelled then. The simulated clock is held while the grid company waits for the
park's acknowledgement, so the controller decides at the instant the event was sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import aiomqtt

from dr.event import DrAck
from dr.mqtt import send_event, sender_endpoint
from dr.wire import encode_event
from drivers.mqtt_url import BrokerUrl
from parkctl.clock import SimClock
from sim.dr_calls import GridCall

log = logging.getLogger(__name__)

ACK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SentCall:
    """What the grid company sent and what came back (None: no acknowledgement in time)."""

    call_id: str
    action: Literal["event", "cancel"]
    sent_at: datetime
    ack: DrAck | None


async def run_grid_company(clock: SimClock, broker: BrokerUrl, site: str, calls: list[GridCall],
                           log_to: list[SentCall]) -> None:  # fmt: skip
    """Send every call (and cancellation) at its instant; record the acknowledgements in ``log_to``."""
    Action = tuple[datetime, Literal["event", "cancel"], GridCall]
    actions: list[Action] = [(c.sent_at, "event", c) for c in calls]
    actions += [(c.cancel_at, "cancel", c) for c in calls if c.cancel_at is not None]
    actions.sort(key=lambda a: (a[0], a[1] == "cancel"))
    endpoint = sender_endpoint(broker)
    for at, action, call in actions:
        await clock.sleep_until(at, priority=20)  # after the devices' reports, before the cycle
        spec = call.spec(cancelled=action == "cancel", modification=1 if action == "cancel" else 0,
                         created=at)  # fmt: skip
        async with clock.hold():
            try:
                ack = await send_event(endpoint, site, encode_event(spec), call.id, ACK_TIMEOUT_S)
            except aiomqtt.MqttError as exc:
                log.warning("grid company could not send %s %s: %s", action, call.id, exc)
                ack = None
        log.info("grid company sent %s %s at %s: %s", action, call.id, at.isoformat(),
                 "no ack" if ack is None else f"{ack.status} ({ack.reason})")  # fmt: skip
        log_to.append(SentCall(call.id, action, at, ack))
