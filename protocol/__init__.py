"""The Volta wire protocol: every subject, name rule, payload and error code, once.

docs/PROTOCOL.md is its contract in words; this package is the reference. Pure
data, no I/O: ``volta.bus`` carries these payloads over NATS, everything above
reads and writes them through these codecs.

- Names and subjects: ``agent.<id>.message``, ``agent.broadcast``, ... and the one
  rule for an id (:data:`ID_PATTERN`).
- Payloads, each an attrs class with its codec (``*_CODEC``, or ``encode_*`` /
  ``decode_*`` functions): messages, statuses and listings, capability requests and
  replies, task contexts, progress, cancellations, identity claims.
- Volta JSON: the total JSON layer every payload goes through.
- Errors: :class:`ProtocolError` (the one decode error: field and reason),
  :class:`PayloadEncodeError`, :class:`InvalidSubject`; :class:`ErrorCode` and
  :class:`VoltaError`, the base of every error that carries a code.
"""

from volta.core import public_names as _public_names

from ._capability import CAPABILITY_REQUEST_CODEC as CAPABILITY_REQUEST_CODEC
from ._capability import CapabilityReply as CapabilityReply
from ._capability import CapabilityRequest as CapabilityRequest
from ._capability import decode_capability_reply as decode_capability_reply
from ._capability import encode_capability_reply as encode_capability_reply
from ._capability import sendable_capability_reply as sendable_capability_reply
from ._claims import AGENT_CLAIM_CODEC as AGENT_CLAIM_CODEC
from ._claims import CLAIM_ANSWER_CODEC as CLAIM_ANSWER_CODEC
from ._claims import CLAIM_CODEC as CLAIM_CODEC
from ._claims import ROLL_CALL_CODEC as ROLL_CALL_CODEC
from ._claims import AgentClaim as AgentClaim
from ._claims import Claim as Claim
from ._claims import ClaimAnswer as ClaimAnswer
from ._claims import ClaimState as ClaimState
from ._claims import Conflict as Conflict
from ._claims import RollCall as RollCall
from ._codec import Codec as Codec
from ._codec import Field as Field
from ._codec import load_json_object as load_json_object
from ._errors import ErrorCode as ErrorCode
from ._errors import InvalidSubject as InvalidSubject
from ._errors import PayloadEncodeError as PayloadEncodeError
from ._errors import ProtocolError as ProtocolError
from ._errors import TaskRefused as TaskRefused
from ._errors import VoltaError as VoltaError
from ._json import MAX_DEPTH as MAX_JSON_DEPTH
from ._json import check_json as check_json
from ._json import decode_json as decode_json
from ._json import encode_json as encode_json
from ._message import MAX_MESSAGE_ID as MAX_MESSAGE_ID
from ._message import MESSAGE_CODEC as MESSAGE_CODEC
from ._message import Message as Message
from ._message import MessageType as MessageType
from ._message import decode_message as decode_message
from ._message import encode_message as encode_message
from ._message import message_attribution as message_attribution
from ._message import message_from_dict as message_from_dict
from ._message import message_to_dict as message_to_dict
from ._names import AGENT_ANNOUNCE as AGENT_ANNOUNCE
from ._names import AGENT_BROADCAST as AGENT_BROADCAST
from ._names import AGENT_CLAIM as AGENT_CLAIM
from ._names import AGENT_HANDLED_ALL as AGENT_HANDLED_ALL
from ._names import AGENT_INBOX_ALL as AGENT_INBOX_ALL
from ._names import AGENT_ROLL_CALL as AGENT_ROLL_CALL
from ._names import AGENT_STATUS_ALL as AGENT_STATUS_ALL
from ._names import BROADCAST as BROADCAST
from ._names import CAPABILITY_REQUEST as CAPABILITY_REQUEST
from ._names import DIRECTORY_QUEUE as DIRECTORY_QUEUE
from ._names import ID_PATTERN as ID_PATTERN
from ._names import ID_RULE as ID_RULE
from ._names import MCP_LIST_AGENTS as MCP_LIST_AGENTS
from ._names import PROGRESS_ALL as PROGRESS_ALL
from ._names import ROUTER_QUEUE as ROUTER_QUEUE
from ._names import TASK_CANCEL as TASK_CANCEL
from ._names import VOLTA_NAMESPACES as VOLTA_NAMESPACES
from ._names import agent_handled as agent_handled
from ._names import agent_id_from_subject as agent_id_from_subject
from ._names import agent_inbox as agent_inbox
from ._names import agent_message as agent_message
from ._names import agent_status as agent_status
from ._names import capability_endpoint as capability_endpoint
from ._names import inbox_queue as inbox_queue
from ._names import is_answerable as is_answerable
from ._names import is_id as is_id
from ._names import progress_subject as progress_subject
from ._names import validate_agent_id as validate_agent_id
from ._names import validate_capability as validate_capability
from ._names import validate_own_agent_id as validate_own_agent_id
from ._names import validate_subject as validate_subject
from ._presence import AGENT_INFO_CODEC as AGENT_INFO_CODEC
from ._presence import INSTANCE_CODEC as INSTANCE_CODEC
from ._presence import MAX_CAPABILITIES as MAX_CAPABILITIES
from ._presence import MAX_COUNT as MAX_COUNT
from ._presence import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from ._presence import MIN_PAGE_BYTES as MIN_PAGE_BYTES
from ._presence import STATUS_CODEC as STATUS_CODEC
from ._presence import AgentInfo as AgentInfo
from ._presence import AgentPage as AgentPage
from ._presence import AgentStatus as AgentStatus
from ._presence import InstanceInfo as InstanceInfo
from ._presence import ListQuery as ListQuery
from ._presence import Presence as Presence
from ._presence import decode_agent_page as decode_agent_page
from ._presence import decode_list_query as decode_list_query
from ._presence import encode_agent_info as encode_agent_info
from ._presence import encode_agent_page as encode_agent_page
from ._presence import encode_list_error as encode_list_error
from ._presence import encode_list_query as encode_list_query
from ._task import CANCEL_CODEC as CANCEL_CODEC
from ._task import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
from ._task import MAX_BUDGET as MAX_BUDGET
from ._task import MAX_CHAIN as MAX_CHAIN
from ._task import MAX_DETAIL as MAX_DETAIL
from ._task import MAX_THREAD_ID as MAX_THREAD_ID
from ._task import MAX_TIMEOUT as MAX_TIMEOUT
from ._task import PROGRESS_CODEC as PROGRESS_CODEC
from ._task import TASK_CODEC as TASK_CODEC
from ._task import CancelRequest as CancelRequest
from ._task import ProgressEvent as ProgressEvent
from ._task import ProgressKind as ProgressKind
from ._task import TaskContext as TaskContext
from ._task import anonymous_caller as anonymous_caller
from ._task import new_id as new_id
from ._task import spent_from as spent_from
from ._task import usage_metadata as usage_metadata
from ._timestamps import format_timestamp as format_timestamp
from ._timestamps import parse_timestamp as parse_timestamp

__all__ = [
    "AGENT_HANDLED_ALL",
    "AGENT_INBOX_ALL",
    # names and subjects
    "AGENT_ANNOUNCE",
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
    "agent_handled",
    "agent_inbox",
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
    # messages
    "MAX_MESSAGE_ID",
    "MESSAGE_CODEC",
    "Message",
    "MessageType",
    "decode_message",
    "encode_message",
    "message_attribution",
    "message_from_dict",
    "message_to_dict",
    # presence and listings
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
    # capabilities
    "CAPABILITY_REQUEST_CODEC",
    "CapabilityReply",
    "CapabilityRequest",
    "decode_capability_reply",
    "encode_capability_reply",
    "sendable_capability_reply",
    # tasks
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
    # identity claims and roll calls
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
    # Volta JSON and codecs
    "MAX_JSON_DEPTH",
    "Codec",
    "Field",
    "check_json",
    "decode_json",
    "encode_json",
    "format_timestamp",
    "load_json_object",
    "parse_timestamp",
    # errors
    "ErrorCode",
    "InvalidSubject",
    "PayloadEncodeError",
    "ProtocolError",
    "TaskRefused",
    "VoltaError",
]

_public_names(__name__, globals())
