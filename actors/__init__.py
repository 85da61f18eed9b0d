"""Agents as supervised actors: what an agent is, what its handler can do, how to talk to one.

An agent is a supervisor whose children are the inbox, the capability responder,
the heartbeat and the announcer. Each message and each capability call it handles is
a unit of work (its task's deadline, budget, chain and cancel; ``_unit.py``). A node
runs agents (``volta.node``); brains think for them (``volta.brains``); nothing here
knows how NATS is reached (``volta.bus``) or what the wire looks like
(``volta.protocol``).

The names below, by who needs them:

- writing a handler: :class:`Handler`, :class:`AgentContext` (send, reply, ask,
  broadcast, list agents, request capabilities), the running unit's
  :class:`TaskScope` and :class:`Budget`, :class:`HandlerError`,
  :class:`CapabilityError`, :class:`AgentFault`; :class:`EchoHandler` as an example;
- running an agent: :class:`Agent`, :class:`AgentSpec`, :class:`SupervisionPolicy`,
  :class:`AgentStatistics`, :class:`UnitStatistics`, :class:`TaskRegistry`; a
  handler described by settings (a brain's spec) is a :class:`HandlerRecipe`, built
  with a :class:`BuildContext`;
- talking to agents from any program: :func:`open_client`, :class:`Client`,
  :class:`AskFailed`, :class:`AskTimeout`, :class:`CapabilityFailed`.
"""

from volta.core import public_names as _public_names

from ._agent import DEFAULT_HEARTBEAT_INTERVAL as DEFAULT_HEARTBEAT_INTERVAL
from ._agent import DEFAULT_REQUEST_TIMEOUT as DEFAULT_REQUEST_TIMEOUT
from ._agent import Agent as Agent
from ._agent import AgentSpec as AgentSpec
from ._agent import AgentStatistics as AgentStatistics
from ._agent import SupervisionPolicy as SupervisionPolicy
from ._calls import AskFailed as AskFailed
from ._calls import AskTimeout as AskTimeout
from ._calls import CapabilityFailed as CapabilityFailed
from ._cancel import TaskRegistry as TaskRegistry
from ._client import Client as Client
from ._client import open_client as open_client
from ._context import AgentContext as AgentContext
from ._durable import REPLY_HEADER as REPLY_HEADER
from ._durable import DurableInboxes as DurableInboxes
from ._durable import DurableMode as DurableMode
from ._durable import DurableSpec as DurableSpec
from ._handler import AgentFault as AgentFault
from ._handler import BuildContext as BuildContext
from ._handler import CapabilityError as CapabilityError
from ._handler import EchoHandler as EchoHandler
from ._handler import Handler as Handler
from ._handler import HandlerError as HandlerError
from ._handler import HandlerFactory as HandlerFactory
from ._handler import HandlerRecipe as HandlerRecipe
from ._journal import Journal as Journal
from ._unit import DELEGATE_SHARE as DELEGATE_SHARE
from ._unit import Budget as Budget
from ._unit import Reservation as Reservation
from ._unit import TaskScope as TaskScope
from ._unit import UnitStatistics as UnitStatistics

__all__ = [
    # writing a handler
    "DELEGATE_SHARE",
    "AgentContext",
    "DurableInboxes",
    "DurableMode",
    "DurableSpec",
    "Journal",
    "REPLY_HEADER",
    "AgentFault",
    "Budget",
    "CapabilityError",
    "EchoHandler",
    "Handler",
    "HandlerError",
    "HandlerFactory",
    "Reservation",
    "TaskScope",
    # running an agent
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_REQUEST_TIMEOUT",
    "Agent",
    "AgentSpec",
    "AgentStatistics",
    "BuildContext",
    "HandlerRecipe",
    "SupervisionPolicy",
    "TaskRegistry",
    "UnitStatistics",
    # talking to agents
    "AskFailed",
    "AskTimeout",
    "CapabilityFailed",
    "Client",
    "open_client",
]

_public_names(__name__, globals())
