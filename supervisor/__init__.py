"""Erlang/OTP-style supervision trees for trio.

A ``Supervisor`` runs children described by ``ChildSpec`` values, restarts them according
to their ``Restart`` type and the supervisor's ``Strategy``, gives up with
``SupervisorEscalation`` when restarts exceed the ``Intensity``, and stops everything in
reverse start order. Supervisors nest: ``Supervisor.run`` is itself a valid child.
"""

from volta.core import public_names as _public_names

from ._escalation import SupervisorEscalation as SupervisorEscalation
from ._events import EventKind as EventKind
from ._events import EventSink as EventSink
from ._events import SupervisorEvent as SupervisorEvent
from ._open import open_supervisor as open_supervisor
from ._shutdown import DEFAULT_SHUTDOWN_TIMEOUT as DEFAULT_SHUTDOWN_TIMEOUT
from ._shutdown import shutdown_scope as shutdown_scope
from ._signals import stop_on_signals as stop_on_signals
from ._spec import Backoff as Backoff
from ._spec import ChildSpec as ChildSpec
from ._spec import Intensity as Intensity
from ._spec import Restart as Restart
from ._spec import Strategy as Strategy
from ._spec import SupervisorSpec as SupervisorSpec
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorStatistics as SupervisorStatistics

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "Backoff",
    "ChildSpec",
    "EventKind",
    "EventSink",
    "Intensity",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorEscalation",
    "SupervisorEvent",
    "SupervisorSpec",
    "SupervisorStatistics",
    "open_supervisor",
    "shutdown_scope",
    "stop_on_signals",
]

_public_names(__name__, globals())
