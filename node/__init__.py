"""A node: one process's supervision tree (one per container), and the services it runs.

A node claims its agents' ids (identity), then runs under one root supervisor the
directory (who is online; ``mcp.list_agents``), the capability router
(``capability.request``), the NATS service API responder, the canceller
(``task.cancel``), the roll-call responder (``agent.rollcall``) and one child per
agent. Everything that happens is an event on
``node.events``.

- Running a node: :class:`Node`, :class:`NodeSpec` (with :class:`ConnectionMode`,
  :class:`DirectorySpec`, :class:`RouterSpec`), :data:`NodeEvent` and the events
  :class:`PresenceChange` and :class:`IdentityClash`; :class:`IdentityConflict` when
  no agent could start.
- Its services, to embed or watch elsewhere (a dashboard keeps a directory of its
  own): :class:`Directory`, :class:`DirectoryService`, :class:`CapabilityRouter`.
"""

from volta.core import public_names as _public_names

from ._directory import Directory as Directory
from ._directory import IdentityClash as IdentityClash
from ._directory import PresenceChange as PresenceChange
from ._directory_service import DirectoryService as DirectoryService
from ._directory_service import DirectorySpec as DirectorySpec
from ._identity import IdentityConflict as IdentityConflict
from ._node import ConnectionMode as ConnectionMode
from ._node import Node as Node
from ._node import NodeEvent as NodeEvent
from ._node import NodeSpec as NodeSpec
from ._router import CapabilityRouter as CapabilityRouter
from ._router import RouterSpec as RouterSpec

__all__ = [
    # running a node
    "ConnectionMode",
    "DirectorySpec",
    "IdentityClash",
    "IdentityConflict",
    "Node",
    "NodeEvent",
    "NodeSpec",
    "PresenceChange",
    "RouterSpec",
    # its services
    "CapabilityRouter",
    "Directory",
    "DirectoryService",
]

_public_names(__name__, globals())
