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
from ._protocol import AgentInfo as AgentInfo
from ._protocol import AgentStatus as AgentStatus
from ._protocol import CapabilityReply as CapabilityReply
from ._protocol import CapabilityRequest as CapabilityRequest
from ._protocol import ErrorCode as ErrorCode
from ._protocol import InstanceInfo as InstanceInfo
from ._protocol import Presence as Presence
from ._protocol import ProtocolError as ProtocolError
from ._router import CapabilityRouter as CapabilityRouter
from ._task import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
from ._task import MAX_BUDGET as MAX_BUDGET
from ._task import MAX_THREAD_ID as MAX_THREAD_ID
from ._task import PROGRESS_ALL as PROGRESS_ALL
from ._task import TASK_CANCEL as TASK_CANCEL
from ._task import ProgressEvent as ProgressEvent
from ._task import ProgressKind as ProgressKind
from ._task import TaskContext as TaskContext
from ._task import TaskRefusal as TaskRefusal
from ._task import TaskRefused as TaskRefused
from ._task import TaskScope as TaskScope
from ._task import progress_subject as progress_subject

__all__ = [
    "PROGRESS_ALL",
    "TASK_CANCEL",
    "BUILTIN_CAPABILITIES",
    "BUILTIN_HANDLERS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MODEL",
    "MAX_BUDGET",
    "MAX_THREAD_ID",
    "Agent",
    "AgentContext",
    "AgentFault",
    "AgentInfo",
    "AgentSpec",
    "AgentStatistics",
    "AgentStatus",
    "AskFailed",
    "AskTimeout",
    "Brain",
    "BrainFailure",
    "BrainSpec",
    "CapabilityError",
    "CapabilityFailed",
    "CapabilityReply",
    "CapabilityRequest",
    "CapabilityRouter",
    "ClaudeModel",
    "Client",
    "Directory",
    "DirectoryService",
    "EchoHandler",
    "FunctionCapabilities",
    "ErrorCode",
    "Handler",
    "HandlerError",
    "HandlerFactory",
    "IdentityClash",
    "IdentityConflict",
    "InstanceInfo",
    "Model",
    "ModelReply",
    "Node",
    "NodeEvent",
    "NodeSpec",
    "OfflineModel",
    "Presence",
    "PresenceChange",
    "ProgressEvent",
    "ProgressKind",
    "ProtocolError",
    "SupervisionPolicy",
    "TaskContext",
    "TaskRefusal",
    "TaskRefused",
    "TaskScope",
    "handler_serves",
    "open_client",
    "progress_subject",
    "resolve_function",
    "resolve_handler",
]
