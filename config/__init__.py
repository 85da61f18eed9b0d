"""Volta configuration: one YAML file per container, checked into frozen attrs objects
before anything starts.

Nothing below this package reads YAML or the environment: the CLI loads a file
with :func:`load_config` (passing ``os.environ`` for ``${VAR}`` in values and the
``NATS_*`` overrides), applies its flags with :func:`with_overrides`, and hands
the result down. A bad configuration raises one :class:`ConfigError` listing
every :class:`ConfigProblem` found.
"""

from volta.core import public_names as _public_names

from ._errors import ConfigError as ConfigError
from ._errors import ConfigProblem as ConfigProblem
from ._load import load_config as load_config
from ._load import load_config_text as load_config_text
from ._load import shipped_config as shipped_config
from ._load import with_overrides as with_overrides
from ._schema import DEFAULT_NATS_URL as DEFAULT_NATS_URL
from ._schema import AgentConfig as AgentConfig
from ._schema import BackoffConfig as BackoffConfig
from ._schema import BrainConfig as BrainConfig
from ._schema import ConnectionMode as ConnectionMode
from ._schema import DirectoryConfig as DirectoryConfig
from ._schema import NatsConfig as NatsConfig
from ._schema import SupervisionConfig as SupervisionConfig
from ._schema import SupervisionStrategy as SupervisionStrategy
from ._schema import VoltaConfig as VoltaConfig

__all__ = [
    "DEFAULT_NATS_URL",
    "AgentConfig",
    "BackoffConfig",
    "BrainConfig",
    "ConfigError",
    "ConfigProblem",
    "ConnectionMode",
    "DirectoryConfig",
    "NatsConfig",
    "SupervisionConfig",
    "SupervisionStrategy",
    "VoltaConfig",
    "load_config",
    "load_config_text",
    "shipped_config",
    "with_overrides",
]

_public_names(__name__, globals())
