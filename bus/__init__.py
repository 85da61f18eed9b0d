"""NATS for trio code: the connection, subscriptions, requests and an embedded server.

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
from ._server import NatsServer as NatsServer
from ._server import NatsServerConfig as NatsServerConfig
from ._server import NatsServerError as NatsServerError
from ._server import NatsServerPortInUse as NatsServerPortInUse
from ._server import find_nats_server as find_nats_server
from ._server import run_nats_server as run_nats_server
from ._subscription import DecodedSubscription as DecodedSubscription
from ._subscription import Delivery as Delivery
from ._subscription import MessageSubscription as MessageSubscription
from ._subscription import Overflow as Overflow
from ._subscription import Subscription as Subscription
from ._subscription import SubscriptionStatistics as SubscriptionStatistics

__all__ = [
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
]

_public_names(__name__, globals())
