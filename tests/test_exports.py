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
import volta.protocol

BUS = {
    "Bus",
    "BusClosed",
    "BusError",
    "BusOptions",
    "BusStatistics",
    "ConnectFailed",
    "ConnectionEvent",
    "ConnectionEventKind",
    "DecodedSubscription",
    "Delivery",
    "MessageSubscription",
    "NatsServer",
    "NatsServerConfig",
    "NatsServerError",
    "NatsServerPortInUse",
    "NoResponders",
    "Overflow",
    "PayloadTooLarge",
    "ReconnectPolicy",
    "RequestTimeout",
    "Subscription",
    "SubscriptionStatistics",
    "find_nats_server",
    "open_bus",
    "redact_url",
    "run_nats_server",
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

PROTOCOL = {
    "AGENT_ANNOUNCE",
    "AGENT_BROADCAST",
    "AGENT_CLAIM",
    "AGENT_STATUS_ALL",
    "BROADCAST",
    "CAPABILITY_REQUEST",
    "DIRECTORY_QUEUE",
    "ID_PATTERN",
    "ID_RULE",
    "MCP_LIST_AGENTS",
    "PROGRESS_ALL",
    "ROUTER_QUEUE",
    "TASK_CANCEL",
    "VOLTA_NAMESPACES",
    "agent_id_from_subject",
    "agent_message",
    "agent_status",
    "capability_endpoint",
    "inbox_queue",
    "is_answerable",
    "is_id",
    "progress_subject",
    "validate_agent_id",
    "validate_capability",
    "validate_own_agent_id",
    "validate_subject",
    "MAX_MESSAGE_ID",
    "MESSAGE_CODEC",
    "Message",
    "MessageType",
    "decode_message",
    "encode_message",
    "message_attribution",
    "message_from_dict",
    "message_to_dict",
    "AGENT_INFO_CODEC",
    "INSTANCE_CODEC",
    "MAX_CAPABILITIES",
    "MAX_COUNT",
    "MAX_NAME_LENGTH",
    "MIN_PAGE_BYTES",
    "STATUS_CODEC",
    "AgentInfo",
    "AgentPage",
    "AgentStatus",
    "InstanceInfo",
    "ListQuery",
    "Presence",
    "decode_agent_page",
    "decode_list_query",
    "encode_agent_info",
    "encode_agent_page",
    "encode_list_error",
    "encode_list_query",
    "CAPABILITY_REQUEST_CODEC",
    "CapabilityReply",
    "CapabilityRequest",
    "decode_capability_reply",
    "encode_capability_reply",
    "CANCEL_CODEC",
    "DEFAULT_MAX_DEPTH",
    "MAX_BUDGET",
    "MAX_CHAIN",
    "MAX_DETAIL",
    "MAX_THREAD_ID",
    "MAX_TIMEOUT",
    "PROGRESS_CODEC",
    "TASK_CODEC",
    "CancelRequest",
    "ProgressEvent",
    "ProgressKind",
    "TaskContext",
    "anonymous_caller",
    "new_id",
    "spent_from",
    "usage_metadata",
    "AGENT_CLAIM_CODEC",
    "CLAIM_ANSWER_CODEC",
    "CLAIM_CODEC",
    "AgentClaim",
    "Claim",
    "ClaimAnswer",
    "ClaimState",
    "Conflict",
    "MAX_JSON_DEPTH",
    "Codec",
    "Field",
    "check_json",
    "decode_json",
    "encode_json",
    "format_timestamp",
    "load_json_object",
    "parse_timestamp",
    "ErrorCode",
    "InvalidSubject",
    "PayloadEncodeError",
    "ProtocolError",
    "TaskRefused",
    "VoltaError",
}

ACTORS = {
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
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [(volta.core, CORE), (volta.protocol, PROTOCOL), (volta.bus, BUS), (volta.actors, ACTORS)],
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
