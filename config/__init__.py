"""Volta configuration: one YAML file per container, loaded into the specs the runtime runs.

A file is a :class:`~volta.node.NodeSpec`, key for key: ``nats`` is a
:class:`~volta.bus.BusOptions` (``url`` for its ``servers``), each entry of ``agents``
an :class:`~volta.actors.AgentSpec` (its ``brain`` a :class:`~volta.brains.BrainSpec`),
``supervision`` a :class:`~volta.actors.SupervisionPolicy` (its ``backoff`` a
:class:`~volta.supervisor.Backoff`), ``directory`` and ``router`` the node's bounds,
``durable`` its inbox stream (a :class:`~volta.actors.DurableSpec`).
There is no second schema: a setting is a field of its class, checked by the class.

Nothing below this package reads YAML or the environment: the CLI loads a file with
:func:`load_config` (passing ``os.environ`` for ``${VAR}`` in values and the
``NATS_*`` overrides), applies its flags with :func:`with_overrides`, builds the
agents' handlers with :func:`assemble`, and hands the result to a node. A bad
configuration raises one :class:`ConfigError` listing every :class:`ConfigProblem`.
"""

from volta.core import ConfigError as ConfigError
from volta.core import ConfigProblem as ConfigProblem
from volta.core import public_names as _public_names

from ._assemble import assemble as assemble
from ._load import load_config as load_config
from ._load import load_config_text as load_config_text
from ._load import shipped_config as shipped_config
from ._load import with_overrides as with_overrides

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "assemble",
    "load_config",
    "load_config_text",
    "shipped_config",
    "with_overrides",
]

_public_names(__name__, globals())
