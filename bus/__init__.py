"""NATS for trio code: the connection, subscriptions, requests, JetStream (streams,
durable publishes and consumers) and an embedded server.

This is the only package that touches asyncio, nats-py or trio-asyncio. Above it
everything is trio: the protocol's payloads (``volta.protocol``) in and out.
"""

from volta.core import public_names as _public_names

from ._bus import Bus as Bus
from ._bus import BusStatistics as BusStatistics
from ._bus import open_bus as open_bus
from ._errors import BusClosed as BusClosed
from ._errors import BusError as BusError
from ._errors import ConnectFailed as ConnectFailed
from ._errors import NoResponders as NoResponders
from ._errors import PayloadTooLarge as PayloadTooLarge
from ._errors import RequestTimeout as RequestTimeout
from ._events import ConnectionEvent as ConnectionEvent
from ._events import ConnectionEventKind as ConnectionEventKind
from ._options import BusOptions as BusOptions
from ._options import ReconnectPolicy as ReconnectPolicy
from ._options import redact_url as redact_url
from ._pull import AckMetadata as AckMetadata
from ._pull import ConsumerGone as ConsumerGone
from ._pull import PullOptions as PullOptions
from ._pull import PullSubscription as PullSubscription
from ._pull import StreamDelivery as StreamDelivery
from ._pull import pull as pull
from ._server import NatsServer as NatsServer
from ._server import NatsServerConfig as NatsServerConfig
from ._server import NatsServerError as NatsServerError
from ._server import NatsServerPortInUse as NatsServerPortInUse
from ._server import find_nats_server as find_nats_server
from ._server import run_nats_server as run_nats_server
from ._stream_publish import MSG_ID as MSG_ID
from ._stream_publish import NotAStream as NotAStream
from ._stream_publish import Outgoing as Outgoing
from ._stream_publish import PubAck as PubAck
from ._stream_publish import PublishFailed as PublishFailed
from ._stream_publish import StreamPublisher as StreamPublisher
from ._streams import ConsumerSpec as ConsumerSpec
from ._streams import ConsumerState as ConsumerState
from ._streams import DeliverPolicy as DeliverPolicy
from ._streams import JetStream as JetStream
from ._streams import JetStreamError as JetStreamError
from ._streams import JetStreamUnavailable as JetStreamUnavailable
from ._streams import Retention as Retention
from ._streams import Storage as Storage
from ._streams import StreamSpec as StreamSpec
from ._streams import StreamState as StreamState
from ._subscription import DecodedSubscription as DecodedSubscription
from ._subscription import Delivery as Delivery
from ._subscription import MessageSubscription as MessageSubscription
from ._subscription import Overflow as Overflow
from ._subscription import Subscription as Subscription
from ._subscription import SubscriptionStatistics as SubscriptionStatistics

__all__ = [
    # the connection
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
    "NoResponders",
    "Overflow",
    "PayloadTooLarge",
    "ReconnectPolicy",
    "RequestTimeout",
    "Subscription",
    "SubscriptionStatistics",
    "open_bus",
    "redact_url",
    # JetStream: streams, durable publishes, durable consumers
    "AckMetadata",
    "ConsumerGone",
    "ConsumerSpec",
    "ConsumerState",
    "DeliverPolicy",
    "JetStream",
    "JetStreamError",
    "JetStreamUnavailable",
    "NotAStream",
    "MSG_ID",
    "Outgoing",
    "PubAck",
    "PublishFailed",
    "PullOptions",
    "PullSubscription",
    "Retention",
    "Storage",
    "StreamDelivery",
    "StreamPublisher",
    "StreamSpec",
    "StreamState",
    "pull",
    # an embedded server
    "NatsServer",
    "NatsServerConfig",
    "NatsServerError",
    "NatsServerPortInUse",
    "find_nats_server",
    "run_nats_server",
]

_public_names(__name__, globals())
