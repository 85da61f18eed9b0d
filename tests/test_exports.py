"""The public surfaces of volta.bus and volta.actors are deliberate.

Adding or removing a public name means changing this list too (config and
supervisor keep their own lists in their test folders).
"""

from __future__ import annotations

import sys

import pytest

import volta.actors
import volta.bus

BUS = {
    "AGENT_ANNOUNCE",
    "AGENT_BROADCAST",
    "AGENT_STATUS_ALL",
    "BROADCAST",
    "CAPABILITY_REQUEST",
    "DIRECTORY_QUEUE",
    "MCP_LIST_AGENTS",
    "RESERVED_AGENT_ID",
    "ROUTER_QUEUE",
    "Bus",
    "BusClosed",
    "BusError",
    "BusOptions",
    "BusStatistics",
    "ConnectFailed",
    "ConnectionEvent",
    "ConnectionEventKind",
    "Delivery",
    "InvalidSubject",
    "Message",
    "MessageDecodeError",
    "MessageSubscription",
    "MessageType",
    "NatsServer",
    "NatsServerConfig",
    "NatsServerError",
    "NoResponders",
    "Overflow",
    "PayloadTooLarge",
    "ReconnectPolicy",
    "RequestTimeout",
    "Subscription",
    "SubscriptionStatistics",
    "agent_id_from_subject",
    "agent_message",
    "agent_status",
    "capability_endpoint",
    "decode_message",
    "encode_message",
    "find_nats_server",
    "format_timestamp",
    "message_from_dict",
    "message_to_dict",
    "open_bus",
    "redact_url",
    "run_nats_server",
    "validate_agent_id",
    "validate_capability",
    "validate_own_agent_id",
    "validate_subject",
}

ACTORS = {
    "BUILTIN_CAPABILITIES",
    "BUILTIN_HANDLERS",
    "Agent",
    "AgentContext",
    "AgentInfo",
    "AgentSpec",
    "AgentStatistics",
    "AgentStatus",
    "AskFailed",
    "AskTimeout",
    "CapabilityError",
    "CapabilityFailed",
    "CapabilityReply",
    "CapabilityRequest",
    "CapabilityRouter",
    "Directory",
    "DirectoryService",
    "EchoHandler",
    "ErrorCode",
    "Handler",
    "HandlerFactory",
    "Node",
    "NodeEvent",
    "NodeSpec",
    "Presence",
    "PresenceChange",
    "ProtocolError",
    "SupervisionPolicy",
    "handler_serves",
    "resolve_handler",
}


@pytest.mark.parametrize(("module", "expected"), [(volta.bus, BUS), (volta.actors, ACTORS)])
def test_public_names(module: object, expected: set[str]) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported == expected
    for name in exported:
        assert hasattr(module, name), name


def test_asyncio_stays_inside_the_bus() -> None:
    """Above the bus everything is trio: no actors module imports asyncio or nats."""
    for name, module in sys.modules.items():
        if name.startswith("volta.actors.") and module is not None:
            source = module.__dict__.get("__file__")
            assert source is not None
            with open(source, encoding="utf-8") as file:
                text = file.read()
            for forbidden in ("import asyncio", "import nats", "from nats", "trio_asyncio"):
                assert forbidden not in text, f"{name} uses {forbidden}"
