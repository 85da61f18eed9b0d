"""The public surfaces of volta.bus and volta.actors are deliberate.

Adding or removing a public name means changing this list too (config and
supervisor keep their own lists in their test folders).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import volta.actors
import volta.bus
import volta.core

BUS = {
    "AGENT_ANNOUNCE",
    "AGENT_BROADCAST",
    "AGENT_CLAIM",
    "AGENT_STATUS_ALL",
    "BROADCAST",
    "CAPABILITY_REQUEST",
    "DIRECTORY_QUEUE",
    "MAX_JSON_DEPTH",
    "MCP_LIST_AGENTS",
    "RESERVED_AGENT_ID",
    "ROUTER_QUEUE",
    "VOLTA_NAMESPACES",
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
    "NatsServerPortInUse",
    "NoResponders",
    "Overflow",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "PayloadTooLarge",
    "ReconnectPolicy",
    "RequestTimeout",
    "Subscription",
    "SubscriptionStatistics",
    "agent_id_from_subject",
    "agent_message",
    "agent_status",
    "capability_endpoint",
    "check_json",
    "decode_json",
    "decode_message",
    "encode_json",
    "encode_message",
    "find_nats_server",
    "format_timestamp",
    "is_answerable",
    "message_attribution",
    "message_from_dict",
    "message_to_dict",
    "open_bus",
    "parse_timestamp",
    "redact_url",
    "run_nats_server",
    "validate_agent_id",
    "validate_capability",
    "validate_own_agent_id",
    "validate_subject",
}

CORE = {
    "Fanout",
    "RateLimitedLog",
    "Summary",
    "Throttle",
    "TokenBucket",
    "open_nursery",
    "printable",
    "unwrap_lone_exception",
}

ACTORS = {
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
}


@pytest.mark.parametrize(
    ("module", "expected"), [(volta.core, CORE), (volta.bus, BUS), (volta.actors, ACTORS)]
)
def test_public_names(module: object, expected: set[str]) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported == expected
    for name in exported:
        assert hasattr(module, name), name


def test_asyncio_stays_inside_the_bus() -> None:
    """Above the bus everything is trio: no actors module imports asyncio or nats."""
    folder = Path(volta.actors.__file__).parent
    examined = []
    for source in sorted(folder.glob("*.py")):
        text = source.read_text(encoding="utf-8")
        for forbidden in ("import asyncio", "import nats", "from nats", "trio_asyncio"):
            assert forbidden not in text, f"{source.name} uses {forbidden}"
        examined.append(source.name)
    assert {"__init__.py", "_inbox.py", "_context.py", "_node.py"} <= set(examined)
    # The check can fail: the bus, right below, does use them.
    assert "import trio_asyncio" in (Path(volta.bus.__file__).parent / "_bus.py").read_text()


def test_the_command_line_does_not_load_the_sdk_until_a_brain_thinks() -> None:
    """``volta agents`` and friends start fast: the anthropic SDK loads on a brain's first call."""
    probe = (
        "import sys, volta._cli, volta._commands, volta._runtime, volta.actors;"
        "print('anthropic' in sys.modules);"
        "model = volta.actors.ClaudeModel(api_key='k', agent_id='a');"
        "model._connection();"
        "print('anthropic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]
