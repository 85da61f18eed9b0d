"""When a supervisor gives up: the restart intensity window and the error it raises."""

from __future__ import annotations

import collections

import attrs

from ._spec import Intensity


class SupervisorEscalation(Exception):
    """A supervisor exceeded its restart intensity, stopped its children and gave up.

    A supervisor nested in another is just a child that raised this, so the parent applies
    its own policy and may escalate in turn. ``__cause__`` is the child's last exception.

    Attributes:
        supervisor: Name of the supervisor that gave up.
        child: Name of the child whose exit exceeded the intensity.
        last_error: That child's exception, or None if it had returned normally.
        restarts: Restarts counted in the window, including the one refused.
        intensity: The limit that was exceeded.
    """

    def __init__(
        self,
        supervisor: str,
        child: str,
        last_error: BaseException | None,
        *,
        restarts: int,
        child_failures: int,
        intensity: Intensity,
    ) -> None:
        self.supervisor = supervisor
        self.child = child
        self.last_error = last_error
        self.restarts = restarts
        self.intensity = intensity
        period = float(intensity.period)
        if child_failures == restarts:
            what = f"child {child!r} failed {restarts} times within {period} s"
        else:
            # Intensity is per supervisor: say so when other children used up the window.
            what = f"{restarts} restarts within {period} s, the last after child {child!r} failed"
        last = repr(last_error) if last_error is not None else "None (it returned normally)"
        super().__init__(
            f"supervisor {supervisor!r} gave up: {what} "
            f"(max {intensity.max_restarts}); last error: {last}"
        )


@attrs.define
class IntensityWindow:
    """Restarts of one supervisor run inside the sliding intensity window."""

    _intensity: Intensity
    _restarts: collections.deque[tuple[float, str]] = attrs.field(factory=collections.deque)

    def admit(self, now: float, child: str) -> bool:
        """Record a restart and tell whether it stays within the intensity.

        Args:
            now: ``trio.current_time()`` of the restart.
            child: Name of the child being restarted.

        Returns:
            False if this restart makes more than ``max_restarts`` within ``period``.
        """
        self._restarts.append((now, child))
        while now - self._restarts[0][0] > self._intensity.period:
            self._restarts.popleft()
        return len(self._restarts) <= self._intensity.max_restarts

    @property
    def restarts(self) -> int:
        """Restarts currently inside the window."""
        return len(self._restarts)

    def restarts_of(self, child: str) -> int:
        """Count the restarts of one child currently inside the window.

        Args:
            child: Name of the child.

        Returns:
            How many of the window's restarts were for that child.
        """
        return sum(1 for _, name in self._restarts if name == child)
