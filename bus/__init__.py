"""NATS for trio code: messages, subjects, the connection and an embedded server.

This is the only package that touches asyncio, nats-py or trio-asyncio. Above it
everything is trio: attrs messages in, attrs messages out.
"""

from ._bus import Bus as Bus
from ._bus import BusStatistics as BusStatistics
from ._bus import open_bus as open_bus
from ._errors import BusClosed as BusClosed
from ._errors import BusError as BusError
from ._errors import ConnectFailed as ConnectFailed
from ._errors import InvalidSubject as InvalidSubject
from ._errors import MessageDecodeError as MessageDecodeError
from ._errors import NoResponders as NoResponders
from ._errors import PayloadDecodeError as PayloadDecodeError
from ._errors import PayloadEncodeError as PayloadEncodeError
from ._errors import PayloadTooLarge as PayloadTooLarge
from ._errors import RequestTimeout as RequestTimeout
from ._events import ConnectionEvent as ConnectionEvent
from ._events import ConnectionEventKind as ConnectionEventKind
from ._json import MAX_DEPTH as MAX_JSON_DEPTH
from ._json import check_json as check_json
from ._json import decode_json as decode_json
from ._json import encode_json as encode_json
from ._message import BROADCAST as BROADCAST
from ._message import Message as Message
from ._message import MessageType as MessageType
from ._message import decode_message as decode_message
from ._message import encode_message as encode_message
from ._message import format_timestamp as format_timestamp
from ._message import message_attribution as message_attribution
from ._message import message_from_dict as message_from_dict
from ._message import message_to_dict as message_to_dict
from ._message import parse_timestamp as parse_timestamp
from ._options import BusOptions as BusOptions
from ._options import ReconnectPolicy as ReconnectPolicy
from ._options import redact_url as redact_url
from ._server import NatsServer as NatsServer
from ._server import NatsServerConfig as NatsServerConfig
from ._server import NatsServerError as NatsServerError
from ._server import NatsServerPortInUse as NatsServerPortInUse
from ._server import find_nats_server as find_nats_server
from ._server import run_nats_server as run_nats_server
from ._subjects import AGENT_ANNOUNCE as AGENT_ANNOUNCE
from ._subjects import AGENT_BROADCAST as AGENT_BROADCAST
from ._subjects import AGENT_CLAIM as AGENT_CLAIM
from ._subjects import AGENT_STATUS_ALL as AGENT_STATUS_ALL
from ._subjects import CAPABILITY_REQUEST as CAPABILITY_REQUEST
from ._subjects import DIRECTORY_QUEUE as DIRECTORY_QUEUE
from ._subjects import MCP_LIST_AGENTS as MCP_LIST_AGENTS
from ._subjects import RESERVED_AGENT_ID as RESERVED_AGENT_ID
from ._subjects import ROUTER_QUEUE as ROUTER_QUEUE
from ._subjects import VOLTA_NAMESPACES as VOLTA_NAMESPACES
from ._subjects import agent_id_from_subject as agent_id_from_subject
from ._subjects import agent_message as agent_message
from ._subjects import agent_status as agent_status
from ._subjects import capability_endpoint as capability_endpoint
from ._subjects import is_answerable as is_answerable
from ._subjects import validate_agent_id as validate_agent_id
from ._subjects import validate_capability as validate_capability
from ._subjects import validate_own_agent_id as validate_own_agent_id
from ._subjects import validate_subject as validate_subject
from ._subscription import Delivery as Delivery
from ._subscription import MessageSubscription as MessageSubscription
from ._subscription import Overflow as Overflow
from ._subscription import Subscription as Subscription
from ._subscription import SubscriptionStatistics as SubscriptionStatistics

__all__ = [
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
]
