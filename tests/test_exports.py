"""The public surfaces of volta.bus and volta.actors are deliberate.

Adding or removing a public name means changing this list too (config and
supervisor keep their own lists in their test folders).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

import volta.actors
import volta.brains
import volta.bus
import volta.core
import volta.node
import volta.protocol

BUS = {
    "AckMetadata",
    "Bus",
    "BusClosed",
    "BusError",
    "BusOptions",
    "BusStatistics",
    "ConnectFailed",
    "ConnectionEvent",
    "ConnectionEventKind",
    "MSG_ID",
    "ConsumerGone",
    "ConsumerSpec",
    "ConsumerState",
    "DecodedSubscription",
    "DeliverPolicy",
    "Delivery",
    "JetStream",
    "JetStreamError",
    "JetStreamUnavailable",
    "MessageSubscription",
    "NatsServer",
    "NatsServerConfig",
    "NatsServerError",
    "NatsServerPortInUse",
    "NoResponders",
    "NotAStream",
    "Outgoing",
    "Overflow",
    "PayloadTooLarge",
    "PubAck",
    "PublishFailed",
    "PullOptions",
    "PullSubscription",
    "ReconnectPolicy",
    "RequestTimeout",
    "Retention",
    "Storage",
    "StreamDelivery",
    "StreamPublisher",
    "StreamSpec",
    "StreamState",
    "Subscription",
    "SubscriptionStatistics",
    "find_nats_server",
    "open_bus",
    "pull",
    "redact_url",
    "run_nats_server",
}

CORE = {
    "ConfigError",
    "ConfigProblem",
    "ConfigTypeError",
    "Fanout",
    "RateLimitedLog",
    "Summary",
    "Throttle",
    "TokenBucket",
    "open_nursery",
    "printable",
    "public_names",
    "unwrap_lone_exception",
    "validators",
}

PROTOCOL = {
    "AGENT_ANNOUNCE",
    "AGENT_HANDLED_ALL",
    "AGENT_INBOX_ALL",
    "agent_handled",
    "agent_inbox",
    "AGENT_BROADCAST",
    "AGENT_CLAIM",
    "AGENT_ROLL_CALL",
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
    "sendable_capability_reply",
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
    "ROLL_CALL_CODEC",
    "RollCall",
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
    "DELEGATE_SHARE",
    "REPLY_HEADER",
    "DurableInboxes",
    "DurableMode",
    "DurableSpec",
    "Journal",
    "AgentContext",
    "AgentFault",
    "Budget",
    "CapabilityError",
    "EchoHandler",
    "Handler",
    "HandlerError",
    "HandlerFactory",
    "Reservation",
    "TaskScope",
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
    "AskFailed",
    "AskTimeout",
    "CapabilityFailed",
    "Client",
    "open_client",
}


NODE = {
    "ConnectionMode",
    "DirectorySpec",
    "IdentityClash",
    "IdentityConflict",
    "Node",
    "NodeEvent",
    "NodeSpec",
    "PresenceChange",
    "RouterSpec",
    "CapabilityRouter",
    "Directory",
    "DirectoryService",
}

BRAINS = {
    "DEFAULT_MODEL",
    "Brain",
    "BrainFailure",
    "BrainSpec",
    "ClaudeModel",
    "Model",
    "ModelReply",
    "OfflineModel",
}

SURFACES = [
    (volta.core, CORE),
    (volta.protocol, PROTOCOL),
    (volta.bus, BUS),
    (volta.actors, ACTORS),
    (volta.node, NODE),
    (volta.brains, BRAINS),
]


@pytest.mark.parametrize(("module", "expected"), SURFACES)
def test_public_names(module: object, expected: set[str]) -> None:
    exported = set(module.__all__)  # type: ignore[attr-defined]
    assert exported == expected
    for name in exported:
        assert hasattr(module, name), name


def test_asyncio_stays_inside_the_bus() -> None:
    """Above the bus (and in the protocol below it) everything is trio: no module of
    these packages imports asyncio or nats."""
    root = Path(volta.actors.__file__).parent.parent
    examined = []
    for package in ("core", "protocol", "supervisor", "actors", "node", "brains", "config"):
        for source in sorted((root / package).glob("*.py")):
            text = source.read_text(encoding="utf-8")
            for forbidden in ("import asyncio", "import nats", "from nats", "trio_asyncio"):
                assert forbidden not in text, f"{package}/{source.name} uses {forbidden}"
            examined.append(f"{package}/{source.name}")
    assert {"actors/_inbox.py", "actors/_context.py", "node/_node.py"} <= set(examined)
    # The check can fail: the bus, right below, does use them.
    assert "import trio_asyncio" in (Path(volta.bus.__file__).parent / "_bus.py").read_text()


def test_the_command_line_does_not_load_the_sdk_until_a_brain_thinks() -> None:
    """``volta agents`` and friends start fast: the anthropic SDK loads on a brain's first call."""
    probe = (
        "import sys, volta._cli, volta._commands, volta._runtime, volta.brains;"
        "print('anthropic' in sys.modules);"
        "model = volta.brains.ClaudeModel(api_key='k', agent_id='a');"
        "model._connection();"
        "print('anthropic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["False", "True"]


@pytest.mark.parametrize(("module", "expected"), SURFACES)
def test_public_objects_say_their_package_not_their_module(
    module: object, expected: set[str]
) -> None:
    """Reprs and tracebacks show the name a user imports (``volta.actors.AskFailed``)."""
    package = module.__name__  # type: ignore[attr-defined]
    for name in expected:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == package, f"{package}.{name} says {value.__module__}"


def test_a_traceback_names_the_public_class() -> None:
    error = volta.actors.AskFailed("beta", volta.protocol.ErrorCode.TIMEOUT, "slow")
    (line,) = traceback.format_exception_only(error)
    assert line == "volta.actors.AskFailed: agent 'beta' failed: timeout: slow\n"
    assert repr(volta.actors.AgentSpec) == "<class 'volta.actors.AgentSpec'>"
