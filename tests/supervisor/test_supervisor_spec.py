"""Specs: validation at construction time, restart types and the backoff formula.

Test rules:
- Pure values, no trio: a bad tree must fail when it is built, before anything runs.
- Errors are asserted with their exact messages.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable

import pytest

from volta.supervisor import Backoff, ChildSpec, Intensity, Restart, SupervisorSpec


async def _child(*, task_status: object) -> None:
    pass


def test_child_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match=r"^child name 'a' is used more than once$"):
        SupervisorSpec(
            "s", [ChildSpec("a", _child), ChildSpec("b", _child), ChildSpec("a", _child)]
        )


def test_children_may_be_given_as_a_list_and_are_kept_as_a_tuple() -> None:
    children = [ChildSpec("a", _child)]
    assert SupervisorSpec("s", children).children == (ChildSpec("a", _child),)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: ChildSpec("", _child), ValueError, "Length of 'name' must be >= 1: 0"),
        (lambda: SupervisorSpec(""), ValueError, "Length of 'name' must be >= 1: 0"),
        (
            lambda: ChildSpec("a", 42),  # type: ignore[arg-type]
            TypeError,
            "'start' must be callable",
        ),
        (
            lambda: ChildSpec("a", _child, shutdown_timeout=-1),
            ValueError,
            "shutdown_timeout: expected a number >= 0, got -1",
        ),
        (
            lambda: ChildSpec("a", _child, shutdown_timeout=math.inf),
            ValueError,
            "shutdown_timeout: expected a number >= 0, got inf",
        ),
        (
            lambda: ChildSpec("a", _child, restart="permanent"),  # type: ignore[arg-type]
            TypeError,
            "'restart' must be <enum 'Restart'> (got 'permanent'",
        ),
        (
            lambda: Intensity(max_restarts=-1),
            ValueError,
            "max_restarts: expected an integer >= 0, got -1",
        ),
        (lambda: Intensity(period=0), ValueError, "period: expected a number > 0, got 0"),
        (
            lambda: Intensity(period="5"),  # type: ignore[arg-type]
            TypeError,
            "period: expected a number > 0, got '5'",
        ),
        (
            lambda: Backoff(initial=2.0, maximum=1.0),
            ValueError,
            "maximum: expected a number >= initial (2), got 1",
        ),
        (
            lambda: Backoff(initial=1.0, maximum=2.0, jitter=1.5),
            ValueError,
            "jitter: expected a number >= 0 and <= 1, got 1.5",
        ),
        (
            lambda: Backoff(initial=1.0, maximum=2.0, multiplier=0.5),
            ValueError,
            "multiplier: expected a number >= 1, got 0.5",
        ),
        (
            lambda: SupervisorSpec("s", [object()]),  # type: ignore[list-item]
            TypeError,
            "'children' must be <class 'volta.supervisor.ChildSpec'> (got <object",
        ),
    ],
)
def test_invalid_specs_are_refused(
    build: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        build()


@pytest.mark.parametrize(
    ("restart", "after_return", "after_crash"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, False, True),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_restart_types_decide_on_the_exit(
    restart: Restart, after_return: bool, after_crash: bool
) -> None:
    assert restart.wants_restart(None) is after_return
    assert restart.wants_restart(RuntimeError("boom")) is after_crash


def test_backoff_without_jitter_doubles_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.5, maximum=3.0, jitter=0.0)
    rng = random.Random(0)
    assert [backoff.delay(n, rng) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    # Far past the float range the cap still applies instead of an OverflowError.
    assert (
        Backoff(initial=1.0, maximum=60.0, multiplier=10.0, jitter=0.0).delay(10_000, rng) == 60.0
    )
    with pytest.raises(ValueError, match=r"^attempt must be at least 1, got 0$"):
        backoff.delay(0, rng)


def test_backoff_jitter_stays_within_its_bounds() -> None:
    backoff = Backoff(initial=2.0, maximum=2.0, jitter=0.25)
    rng = random.Random(1)
    delays = [backoff.delay(1, rng) for _ in range(1_000)]
    assert min(delays) >= 1.5
    assert max(delays) <= 2.5
    assert max(delays) - min(delays) > 0.9  # the whole range is used, not a constant
