"""What a supervisor runs and how it reacts when a child exits.

Everything here is a frozen attrs value checked when it is built, so a bad tree fails at
construction time, before anything starts. The vocabulary is Erlang/OTP's: restart types,
strategies and the restart intensity mean what they mean in OTP's ``supervisor`` module.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Awaitable, Callable, Iterable

import attrs
from attrs import validators as v

from volta.core import ConfigError, validators


class Restart(enum.Enum):
    """When a child that exited is started again."""

    PERMANENT = "permanent"
    """Always restarted, whether it returned or raised."""
    TRANSIENT = "transient"
    """Restarted only if it raised; a normal return is final."""
    TEMPORARY = "temporary"
    """Never restarted, not even when a sibling's failure stopped it."""

    def wants_restart(self, error: BaseException | None) -> bool:
        """Tell whether a child with this restart type is restarted after an exit.

        Args:
            error: The exception the child raised, or None if it returned normally.

        Returns:
            True if the supervisor should start the child again.
        """
        if self is Restart.PERMANENT:
            return True
        if self is Restart.TRANSIENT:
            return error is not None
        return False


class Strategy(enum.Enum):
    """Which children are restarted when one of them has to be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped in reverse start order, then all start in order."""
    REST_FOR_ONE = "rest_for_one"
    """The child and those started after it: they stop in reverse order, then start in order."""


@attrs.frozen
class Intensity:
    """How many restarts a supervisor allows before it gives up (OTP's intensity and period).

    If more than ``max_restarts`` restarts happen within any ``period`` seconds, the
    supervisor stops all its children and raises ``SupervisorEscalation``. A restart exactly
    ``period`` seconds old still counts, as in OTP.
    """

    max_restarts: int = attrs.field(default=1, validator=validators.integer(ge=0))
    """Restarts allowed inside the window; 0 means the first restart escalates."""
    period: float = attrs.field(default=5.0, validator=validators.number(gt=0))
    """Length of the sliding window in seconds (trio clock)."""


def _not_below_initial(instance: Backoff, attribute: attrs.Attribute[float], value: float) -> None:
    if value < instance.initial:
        raise ConfigError(
            f"expected a number >= initial ({instance.initial:g}), got {value:g}",
            key=attribute.name,
        )


@attrs.frozen
class Backoff:
    """Exponential delay before a child is restarted.

    The n-th consecutive restart of a child waits
    ``min(maximum, initial * multiplier ** (n - 1))`` seconds, multiplied by a random factor
    drawn uniformly from ``[1 - jitter, 1 + jitter]``. The count starts again from 1 once the
    child has run for ``reset_after`` seconds without failing.
    """

    initial: float = attrs.field(default=0.05, validator=validators.number(ge=0))
    """Delay before the first restart, in seconds."""
    maximum: float = attrs.field(
        default=5.0, validator=[validators.number(ge=0), _not_below_initial]
    )
    """Cap on the delay before jitter is applied, in seconds (at least ``initial``)."""
    multiplier: float = attrs.field(default=2.0, validator=validators.number(ge=1))
    """Growth factor from one consecutive restart to the next (at least 1)."""
    jitter: float = attrs.field(default=0.1, validator=validators.number(ge=0, le=1))
    """Relative spread of the random factor, between 0 (none) and 1."""
    reset_after: float = attrs.field(default=10.0, validator=validators.number(ge=0))
    """Seconds a child must run without failing to reset its count."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Compute the delay before a restart.

        Args:
            attempt: Which consecutive restart this is, starting at 1.
            rng: Source of the jitter; it is not used when ``jitter`` is 0.

        Returns:
            The delay in seconds.

        Raises:
            ValueError: If ``attempt`` is below 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        try:
            base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        except OverflowError:
            # After enough failures the power leaves the float range; the cap applies anyway.
            base = self.maximum
        if self.jitter == 0:
            return base
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)


@attrs.frozen
class ChildSpec:
    """One child of a supervisor.

    ``start`` is called as ``await start(task_status=...)`` and must call
    ``task_status.started()`` once it is ready, like a function given to
    ``trio.Nursery.start``. A supervisor's own ``Supervisor.run`` has this signature, so a
    supervisor can be the child of another.

    Attributes:
        name: Unique name among the supervisor's children, used in events and logs.
        start: Async function that runs the child; it takes a ``task_status`` keyword.
        restart: When the child is restarted after it exits.
        shutdown_timeout: Seconds the child gets to finish its cleanup once asked to stop.
    """

    name: str = attrs.field(validator=v.and_(v.instance_of(str), v.min_len(1)))
    start: Callable[..., Awaitable[object]] = attrs.field(validator=v.is_callable())
    restart: Restart = attrs.field(default=Restart.PERMANENT, validator=v.instance_of(Restart))
    shutdown_timeout: float = attrs.field(default=5.0, validator=validators.number(ge=0))


def _as_tuple(children: Iterable[ChildSpec]) -> tuple[ChildSpec, ...]:
    # Accept a list for convenience; store a tuple so the spec stays immutable.
    return tuple(children)


def _unique_names(
    _instance: object,
    _attribute: attrs.Attribute[tuple[ChildSpec, ...]],
    children: tuple[ChildSpec, ...],
) -> None:
    seen: set[str] = set()
    for child in children:
        if child.name in seen:
            raise ValueError(f"child name {child.name!r} is used more than once")
        seen.add(child.name)


@attrs.frozen
class SupervisorSpec:
    """A supervisor: its children in start order and its restart policy.

    Attributes:
        name: Name of the supervisor, used in events, logs and escalations.
        children: Children in start order (any iterable); they stop in the reverse order.
        strategy: Which children restart when one has to restart.
        intensity: How many restarts are allowed before the supervisor gives up.
        backoff: Delay before restarts, or None to restart at once (as OTP does).
        auto_shutdown: Whether ``Supervisor.run`` returns once no child is left to run. Set it
            to False for a pool filled with ``Supervisor.start_child`` that must outlive its
            children (OTP's ``auto_shutdown => never``).
    """

    name: str = attrs.field(validator=v.and_(v.instance_of(str), v.min_len(1)))
    children: tuple[ChildSpec, ...] = attrs.field(
        default=(),
        converter=_as_tuple,
        validator=(v.deep_iterable(v.instance_of(ChildSpec)), _unique_names),
    )
    strategy: Strategy = attrs.field(
        default=Strategy.ONE_FOR_ONE, validator=v.instance_of(Strategy)
    )
    intensity: Intensity = attrs.field(factory=Intensity, validator=v.instance_of(Intensity))
    backoff: Backoff | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(Backoff))
    )
    auto_shutdown: bool = attrs.field(default=True, validator=v.instance_of(bool))
