"""Supervisor events: one record per start, exit, restart, stop, timeout and escalation.

Every event goes to two places: the ``on_event`` sink given to the supervisor (metrics, a
dashboard, a test) and the ``volta.supervisor`` logger. A sink that raises is logged and
otherwise ignored, so observing a supervisor can never break it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TypeAlias

import attrs
import trio

logger = logging.getLogger("volta.supervisor")


class EventKind(enum.Enum):
    """What happened to a child."""

    START = "start"
    """The child called ``task_status.started()``."""
    EXIT = "exit"
    """The child returned or raised on its own (``reason`` holds the exception)."""
    RESTART = "restart"
    """The supervisor decided to restart the child (``delay`` holds the backoff)."""
    STOP = "stop"
    """The supervisor stopped the child and the child has finished."""
    SHUTDOWN_TIMEOUT = "shutdown_timeout"
    """The child was still running when its shutdown deadline passed."""
    ESCALATION = "escalation"
    """The restart intensity was exceeded: the supervisor stops everything and raises."""


@attrs.frozen
class SupervisorEvent:
    """Something that happened to one child of one supervisor.

    Attributes:
        kind: What happened.
        supervisor: Name of the supervisor.
        child: Name of the child.
        at: ``trio.current_time()`` when it happened.
        restarts: How many times the child had been restarted by then (in this run).
        reason: ``repr`` of the exception involved, or an explanation; None if there is none.
        delay: Backoff before the restart in seconds, for ``RESTART`` events only.
    """

    kind: EventKind
    supervisor: str
    child: str
    at: float
    restarts: int
    reason: str | None = None
    delay: float | None = None


EventSink: TypeAlias = Callable[[SupervisorEvent], None]
"""Receives every event; it runs synchronously inside the supervisor, so keep it quick."""


def _ignore(_event: SupervisorEvent) -> None:
    pass


def _level(kind: EventKind, error: BaseException | None) -> int:
    if kind is EventKind.ESCALATION:
        return logging.ERROR
    if kind is EventKind.SHUTDOWN_TIMEOUT or error is not None:
        return logging.WARNING
    if kind in (EventKind.EXIT, EventKind.RESTART):
        return logging.INFO
    # Starts and stops happen for every child of every agent: keep them out of INFO.
    return logging.DEBUG


@attrs.define
class EventPublisher:
    """Builds events for one supervisor, logs them and hands them to the sink."""

    _supervisor: str
    _sink: EventSink | None = None

    def publish(
        self,
        kind: EventKind,
        child: str,
        *,
        restarts: int,
        error: BaseException | None = None,
        reason: str | None = None,
        delay: float | None = None,
    ) -> SupervisorEvent:
        """Record one event.

        Args:
            kind: What happened.
            child: Name of the child.
            restarts: The child's restart count.
            error: Exception involved; its ``repr`` becomes the reason and it is logged with
                its traceback.
            reason: Explanation to use instead of ``repr(error)``.
            delay: Backoff delay, for restarts.

        Returns:
            The event that was published.
        """
        if reason is None and error is not None:
            reason = repr(error)
        event = SupervisorEvent(
            kind=kind,
            supervisor=self._supervisor,
            child=child,
            at=trio.current_time(),
            restarts=restarts,
            reason=reason,
            delay=delay,
        )
        logger.log(
            _level(kind, error),
            "supervisor %r: %s %r (restarts=%d%s%s)",
            event.supervisor,
            kind.value,
            child,
            restarts,
            "" if delay is None else f", delay={delay:.3f}s",
            "" if reason is None else f", reason={reason}",
            exc_info=error,
        )
        sink = self._sink or _ignore
        try:
            sink(event)
        except Exception:
            logger.exception("supervisor %r: event sink %r failed", self._supervisor, sink)
        return event
