"""Agents as supervised actors, and the node that runs them.

An agent is a supervisor whose children are the inbox, the capability
responder, the heartbeat and the announcer. A node runs the directory
(discovery, ``mcp.list_agents``), the capability router and the agents under
one root supervisor. Nothing here knows how NATS is reached: that is ``volta.bus``.
"""

from ._agent import Agent as Agent
from ._agent import AgentSpec as AgentSpec
from ._agent import AgentStatistics as AgentStatistics
from ._agent import SupervisionPolicy as SupervisionPolicy
from ._brain import Brain as Brain
from ._brain import BrainSpec as BrainSpec
from ._calls import AskFailed as AskFailed
from ._calls import AskTimeout as AskTimeout
from ._calls import CapabilityFailed as CapabilityFailed
from ._client import Client as Client
from ._client import open_client as open_client
from ._context import AgentContext as AgentContext
from ._directory import Directory as Directory
from ._directory import IdentityClash as IdentityClash
from ._directory import PresenceChange as PresenceChange
from ._directory_service import DirectoryService as DirectoryService
from ._functions import FunctionCapabilities as FunctionCapabilities
from ._functions import resolve_function as resolve_function
from ._handler import BUILTIN_CAPABILITIES as BUILTIN_CAPABILITIES
from ._handler import BUILTIN_HANDLERS as BUILTIN_HANDLERS
from ._handler import AgentFault as AgentFault
from ._handler import CapabilityError as CapabilityError
from ._handler import EchoHandler as EchoHandler
from ._handler import Handler as Handler
from ._handler import HandlerError as HandlerError
from ._handler import HandlerFactory as HandlerFactory
from ._handler import handler_serves as handler_serves
from ._handler import resolve_handler as resolve_handler
from ._identity import IdentityConflict as IdentityConflict
from ._models import DEFAULT_MODEL as DEFAULT_MODEL
from ._models import BrainFailure as BrainFailure
from ._models import ClaudeModel as ClaudeModel
from ._models import Model as Model
from ._models import ModelReply as ModelReply
from ._node import Node as Node
from ._node import NodeEvent as NodeEvent
from ._node import NodeSpec as NodeSpec
from ._offline import OfflineModel as OfflineModel
from ._router import CapabilityRouter as CapabilityRouter
from ._unit import TaskScope as TaskScope

__all__ = [
    "BUILTIN_CAPABILITIES",
    "BUILTIN_HANDLERS",
    "DEFAULT_MODEL",
    "Agent",
    "AgentContext",
    "AgentFault",
    "AgentSpec",
    "AgentStatistics",
    "AskFailed",
    "AskTimeout",
    "Brain",
    "BrainFailure",
    "BrainSpec",
    "CapabilityError",
    "CapabilityFailed",
    "CapabilityRouter",
    "ClaudeModel",
    "Client",
    "Directory",
    "DirectoryService",
    "EchoHandler",
    "FunctionCapabilities",
    "Handler",
    "HandlerError",
    "HandlerFactory",
    "IdentityClash",
    "IdentityConflict",
    "Model",
    "ModelReply",
    "Node",
    "NodeEvent",
    "NodeSpec",
    "OfflineModel",
    "PresenceChange",
    "SupervisionPolicy",
    "TaskScope",
    "handler_serves",
    "open_client",
    "resolve_function",
    "resolve_handler",
]
