"""What every layer of Volta builds on: plain trio, no NATS, no agents.

- :func:`open_nursery`: a nursery whose lone error comes out bare (not as a group
  of one), for context managers that hold background tasks across a ``yield``.
- :class:`Fanout`: one stream of events, many watchers, an emitter that never blocks.
- :class:`RateLimitedLog`, :class:`Throttle`, :class:`TokenBucket`: a flood of bad
  input becomes a line and a summary, not a flood of log lines or replies.
- :func:`printable`: text from the wire made safe for one log line or a terminal.
- :class:`ConfigError` and :mod:`volta.core.validators`: every spec class checks its
  settings with these, so a bad value reads the same from YAML or from Python.
- :func:`public_names`: a package's public objects say the package, not their module.
"""

from . import validators as validators
from ._exports import public_names as public_names
from ._fanout import Fanout as Fanout
from ._nursery import open_nursery as open_nursery
from ._nursery import unwrap_lone_exception as unwrap_lone_exception
from ._settings import ConfigError as ConfigError
from ._settings import ConfigProblem as ConfigProblem
from ._settings import ConfigTypeError as ConfigTypeError
from ._throttle import RateLimitedLog as RateLimitedLog
from ._throttle import Summary as Summary
from ._throttle import Throttle as Throttle
from ._throttle import TokenBucket as TokenBucket
from ._throttle import printable as printable

__all__ = [
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
]

public_names(__name__, globals())
