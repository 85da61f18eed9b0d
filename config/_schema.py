"""What a Volta container runs: the configuration as frozen attrs classes.

Each class checks its own values when it is built, whether by the YAML loader or
directly in Python, and reports a bad value as a :class:`ConfigError` whose keys
are relative to that class (the loader prefixes the path from the document root).
Built in Python, a class stops at its first bad field (attrs runs the validators
in turn); the loader runs every validator and reports them all. A validator that
checks a list reports every bad item of it at once.
Field types are enforced at the YAML edge by the loader and by mypy in Python
code; the validators here check ranges, shapes and cross-field rules.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

import attrs

from volta.bus import BusOptions, ReconnectPolicy
from volta.protocol import BROADCAST, validate_agent_id

from ._errors import ConfigError, ConfigProblem, describe

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_IDENTIFIER = r"[^\W\d]\w*"
# package.module:attribute, where the attribute is one name (a class or a function).
_HANDLER_REFERENCE = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}")


class ConnectionMode(enum.Enum):
    """How the agents of one container reach NATS."""

    SHARED = "shared"
    """All agents share one NATS connection."""
    PER_AGENT = "per_agent"
    """Each agent opens its own connection."""


class SupervisionStrategy(enum.Enum):
    """Which children an agent's supervisor restarts when one of them fails."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that failed."""
    ONE_FOR_ALL = "one_for_all"
    """Every child."""
    REST_FOR_ONE = "rest_for_one"
    """The child that failed and every child started after it."""


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> _Validator:
    """A validator for a finite number within the given bounds."""
    bounds = [
        f"{op} {bound:g}" for op, bound in ((">", gt), (">=", ge), ("<=", le)) if bound is not None
    ]
    expected = " ".join(["expected a number", " and ".join(bounds)])

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not (
            _is_number(value)
            and (gt is None or value > gt)
            and (ge is None or value >= ge)
            and (le is None or value <= le)
        ):
            raise ConfigError(f"{expected}, got {describe(value)}", key=attribute.name)

    return check


def _integer(*, ge: int) -> _Validator:
    """A validator for an integer (not a bool) of at least ``ge``."""

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < ge:
            raise ConfigError(
                f"expected an integer >= {ge}, got {describe(value)}", key=attribute.name
            )

    return check


def _text(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"expected a non-empty string, got {describe(value)}", key=attribute.name)


_optional_text = attrs.validators.optional(_text)


# --- nats -------------------------------------------------------------------------------


def _to_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """One URL, several separated by commas (as in ``NATS_URL``), or a list of URLs."""
    if isinstance(value, str):
        return tuple(url.strip() for url in value.split(",") if url.strip())
    if not isinstance(value, list | tuple):
        raise ConfigError(f"expected a URL or a list of URLs, got {describe(value)}", key="url")
    problems = [
        ConfigProblem(f"url[{index}]", f"expected a URL string, got {describe(url)}")
        for index, url in enumerate(value)
        if not isinstance(url, str)
    ]
    if problems:
        raise ConfigError.from_problems(problems)
    return tuple(url.strip() for url in value if url.strip())


def _check_urls(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise ConfigError("expected at least one server URL", key=attribute.name)
    # The bus owns the rules for server URLs; its messages already hide credentials.
    try:
        BusOptions(servers=value)
    except ValueError as error:
        raise ConfigError(str(error).removeprefix("servers: "), key=attribute.name) from None


def _check_reconnect(
    _instance: object, attribute: attrs.Attribute[Any], value: ReconnectPolicy
) -> None:
    # ReconnectPolicy checks its own delays; it leaves max_attempts open.
    attempts = value.max_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < -1:
        raise ConfigError(
            f"expected -1 (forever) or an integer >= 0, got {describe(attempts)}",
            key=f"{attribute.name}.max_attempts",
        )


@attrs.frozen(kw_only=True)
class NatsConfig:
    """How to reach NATS. The ``NATS_*`` environment variables override it at load time."""

    url: tuple[str, ...] = attrs.field(
        default=(DEFAULT_NATS_URL,), converter=_to_urls, validator=_check_urls
    )
    """Server URLs; several mean a cluster. A string may hold several, comma-separated."""
    user: str | None = attrs.field(default=None, repr=False, validator=_optional_text)
    """User name, when not in the URL (``NATS_USER``)."""
    password: str | None = attrs.field(default=None, repr=False)
    """Password (``NATS_PASSWORD``); never shown in reprs or errors."""
    token: str | None = attrs.field(default=None, repr=False)
    """Auth token (``NATS_TOKEN``); never shown in reprs or errors."""
    creds_file: Path | None = None
    """A NATS ``.creds`` file (``NATS_CREDS``), relative to the working directory."""
    name: str | None = attrs.field(default=None, validator=_optional_text)
    """Connection name shown in NATS monitoring."""
    connect_timeout: float = attrs.field(default=2.0, validator=_number(gt=0))
    """Seconds allowed for one connect + handshake."""
    retry_initial_connect: bool = True
    """Keep trying the first connection (a container may start before its server)."""
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy, validator=_check_reconnect)
    """How to reconnect after losing the connection."""

    def bus_options(self) -> BusOptions:
        """The options :func:`volta.bus.open_bus` takes, credentials included."""
        return BusOptions(
            servers=self.url,
            name=self.name,
            user=self.user,
            password=self.password,
            token=self.token,
            creds_file=self.creds_file,
            connect_timeout=self.connect_timeout,
            retry_initial_connect=self.retry_initial_connect,
            reconnect=self.reconnect,
        )


# --- supervision ------------------------------------------------------------------------


def _check_maximum(instance: BackoffConfig, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < instance.initial:
        raise ConfigError(
            f"expected a number >= initial ({instance.initial:g}), got {describe(value)}",
            key=attribute.name,
        )


@attrs.frozen(kw_only=True)
class BackoffConfig:
    """Delay between restarts of a failing child: exponential, capped, with jitter."""

    initial: float = attrs.field(default=0.05, validator=_number(ge=0))
    """Delay before the first restart, in seconds."""
    maximum: float = attrs.field(default=5.0, validator=[_number(gt=0), _check_maximum])
    """Upper bound of the delay, in seconds."""
    multiplier: float = attrs.field(default=2.0, validator=_number(ge=1))
    """Growth of the delay from one restart to the next."""
    jitter: float = attrs.field(default=0.1, validator=_number(ge=0, le=1))
    """Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]."""


@attrs.frozen(kw_only=True)
class SupervisionConfig:
    """Restart policy of each agent's own supervisor."""

    strategy: SupervisionStrategy = SupervisionStrategy.ONE_FOR_ONE
    """Which children restart when one fails."""
    max_restarts: int = attrs.field(default=5, validator=_integer(ge=0))
    """Restarts allowed within ``period`` before the supervisor gives up and escalates."""
    period: float = attrs.field(default=10.0, validator=_number(gt=0))
    """Window, in seconds, over which ``max_restarts`` is counted."""
    backoff: BackoffConfig | None = None
    """Delay between restarts; None restarts at once."""
    shutdown_timeout: float = attrs.field(default=5.0, validator=_number(gt=0))
    """Seconds a child is given to stop before it is cancelled hard."""


# --- agents -----------------------------------------------------------------------------


def _check_agent_id(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        validate_agent_id(value)
    except ValueError as error:
        raise ConfigError(str(error), key=attribute.name) from None
    if value == BROADCAST:
        raise ConfigError(
            f"agent id {value!r} is reserved: it addresses every agent", key=attribute.name
        )


def _check_capabilities(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    problems: list[ConfigProblem] = []
    first_at: dict[str, int] = {}
    for index, capability in enumerate(value):
        key = f"{attribute.name}[{index}]"
        if not isinstance(capability, str) or not _NAME.fullmatch(capability):
            problems.append(
                ConfigProblem(
                    key,
                    f"invalid capability {describe(capability)}: "
                    "use 1-64 characters from A-Z a-z 0-9 _ -",
                )
            )
        elif capability in first_at:
            problems.append(
                ConfigProblem(
                    key,
                    f"duplicate capability {capability!r} "
                    f"(first at {attribute.name}[{first_at[capability]}])",
                )
            )
        else:
            first_at[capability] = index
    if problems:
        raise ConfigError.from_problems(problems)


def _check_handler(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not (
        _NAME.fullmatch(value) or _HANDLER_REFERENCE.fullmatch(value)
    ):
        raise ConfigError(
            f"invalid handler {describe(value)}: expected a built-in handler name "
            "or 'package.module:attribute'",
            key=attribute.name,
        )


def _freeze_options(value: Mapping[str, object]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {describe(value)}", key="options")
    for option in value:
        if not isinstance(option, str):
            raise ConfigError(
                f"expected string keys, got the key {describe(option)}", key="options"
            )
    # Read-only at the top level; the values are handed to the handler as YAML made them.
    return MappingProxyType(dict(value))


def _name_default(agent: AgentConfig) -> str:
    return agent.id


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FUNCTION_REFERENCE = re.compile(
    rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}|{_NAME.pattern}"
)


def _strings(value: object, field: str) -> Mapping[str, str]:
    """A mapping of capability-shaped names to non-empty strings, read-only."""
    if isinstance(value, MappingProxyType):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a mapping, got {describe(value)}", key=field)
    problems = []
    for name, text in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(
                ConfigProblem(
                    f"{field}.{name}",
                    "expected a capability name (1-64 characters from A-Z a-z 0-9 _ -)",
                )
            )
        elif not isinstance(text, str) or not text.strip():
            problems.append(
                ConfigProblem(
                    f"{field}.{name}", f"expected a non-empty string, got {describe(text)}"
                )
            )
    if problems:
        raise ConfigError.from_problems(problems)
    return MappingProxyType(dict(value))


def _skills(value: object) -> Mapping[str, str]:
    return _strings(value, "skills")


def _functions(value: object) -> Mapping[str, str]:
    return _strings(value, "functions")


_count = _integer(ge=0)


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _count(instance, attribute, value)


def _check_team(_instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    problems = []
    for index, member in enumerate(value):
        try:
            validate_agent_id(member)
        except (ValueError, TypeError) as error:
            problems.append(ConfigProblem(f"{attribute.name}[{index}]", str(error)))
    if problems:
        raise ConfigError.from_problems(problems)


def _check_env_name(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            f"expected an environment variable name, got {describe(value)}", key=attribute.name
        )


def _check_base_url(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(
            f"expected an http:// or https:// URL, got {describe(value)}", key=attribute.name
        )


@attrs.frozen(kw_only=True)
class BrainConfig:
    """How an agent thinks with Claude (``agents[i].brain``).

    The API key is never in the file: it comes from the environment variable
    ``api_key_env`` names. Without it (or with ``offline: true``) the agent runs
    the offline brain, which says so in every answer.
    """

    model: str | None = attrs.field(default=None, validator=_optional_text)
    """The model; default ``VOLTA_MODEL`` from the environment, else a current Sonnet."""
    system: str = attrs.field(default="")
    """The agent's instructions (its role), inline."""
    system_file: Path | None = None
    """...or in a file, relative to the config file's folder."""
    max_tokens: int = attrs.field(default=1024, validator=_integer(ge=16))
    """Most output tokens of one model call."""
    temperature: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_number(ge=0, le=1))
    )
    """Sampling temperature (none: the model's default)."""
    max_steps: int = attrs.field(default=8, validator=_integer(ge=1))
    """Model calls per message at most (tool steps); the last one may not call tools."""
    budget: int | None = attrs.field(default=50_000, validator=_optional_count)
    """Tokens one task may spend on this agent, its delegates included (null: no limit)."""
    task_timeout: float = attrs.field(default=120.0, validator=_number(gt=0))
    """Deadline, in seconds, of a task this agent starts (a message that came without one)."""
    team: tuple[str, ...] = attrs.field(default=(), validator=_check_team)
    """Agents it works with (named in its prompt; the offline brain asks each of them)."""
    skills: Mapping[str, str] = attrs.field(factory=dict, converter=_skills, hash=False)
    """Capabilities it serves as prompted skills: name -> what to do with the input."""
    history_turns: int = attrs.field(default=20, validator=_integer(ge=0))
    """Turns of conversation kept per peer or thread."""
    history_tokens: int = attrs.field(default=8000, validator=_integer(ge=0))
    """Estimated tokens of conversation kept per peer or thread."""
    api_key_env: str = attrs.field(default="ANTHROPIC_API_KEY", validator=_check_env_name)
    """The environment variable that holds the API key (never the key itself)."""
    base_url: str | None = attrs.field(default=None, validator=_check_base_url)
    """Another endpoint for the Messages API (default: the SDK's, or ``ANTHROPIC_BASE_URL``)."""
    max_retries: int = attrs.field(default=2, validator=_integer(ge=0))
    """Retries of 429/529/5xx and timeouts (the SDK's, with backoff and retry-after)."""
    call_timeout: float = attrs.field(default=60.0, validator=_number(gt=0))
    """Seconds one model call may take (the task's deadline may cut it shorter)."""
    offline: bool = False
    """Run the offline brain even when a key is set."""


def _check_brain(instance: AgentConfig, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None and instance.handler is None:
        raise ConfigError("required key is missing (or give the agent a 'brain')", key="handler")
    if value is not None and instance.handler is not None:
        raise ConfigError("give either 'handler' or 'brain', not both", key="brain")


def _check_functions(
    instance: AgentConfig, attribute: attrs.Attribute[Any], value: Mapping[str, str]
) -> None:
    problems = []
    for name, reference in value.items():
        if not _FUNCTION_REFERENCE.fullmatch(reference):
            problems.append(
                ConfigProblem(
                    f"{attribute.name}.{name}",
                    f"expected 'package.module:function' or a built-in capability, got "
                    f"{describe(reference)}",
                )
            )
        elif name not in instance.capabilities:
            problems.append(
                ConfigProblem(f"{attribute.name}.{name}", "not one of the agent's capabilities")
            )
    brain = instance.brain
    if isinstance(brain, BrainConfig):
        for name in brain.skills:
            if name not in instance.capabilities:
                problems.append(
                    ConfigProblem(f"brain.skills.{name}", "not one of the agent's capabilities")
                )
            elif name in value:
                problems.append(ConfigProblem(f"brain.skills.{name}", "also served by a function"))
    if problems:
        raise ConfigError.from_problems(problems)


@attrs.frozen(kw_only=True)
class AgentConfig:
    """One agent: who it is, what it can do, and what runs it."""

    id: str = attrs.field(validator=_check_agent_id)
    """Agent id, 1-64 characters from ``A-Z a-z 0-9 _ -``; ``broadcast`` is reserved."""
    name: str = attrs.field(default=attrs.Factory(_name_default, takes_self=True), validator=_text)
    """Display name; defaults to the id."""
    capabilities: tuple[str, ...] = attrs.field(default=(), validator=_check_capabilities)
    """Capabilities offered to ``capability.request``; unique, each shaped like an id."""
    handler: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_handler)
    )
    """A built-in handler name, or ``package.module:attribute`` (imported later, not here);
    or none, for an agent with a ``brain``."""
    brain: BrainConfig | None = attrs.field(default=None, validator=_check_brain)
    """It thinks with Claude (instead of a ``handler``)."""
    # Left out of the hash (a mapping has none) so that configs stay hashable.
    options: Mapping[str, object] = attrs.field(factory=dict, converter=_freeze_options, hash=False)
    """Free-form settings passed to the handler factory (read-only at the top level)."""
    max_concurrency: int = attrs.field(default=8, validator=_integer(ge=1))
    """Messages handled at once."""
    capability_timeout: float = attrs.field(default=30.0, validator=_number(gt=0))
    """Seconds a capability request may run before it fails."""
    replicated: bool = False
    """Run it as one of several instances (other nodes, other containers) that share its
    messages and capability calls; without it, a second node starting the same id is
    refused."""
    inbox_buffer: int = attrs.field(default=1024, validator=_integer(ge=1))
    """Messages held (per inbox subscription) while the agent is busy; more are dropped,
    counted and reported."""
    inbox_max_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_integer(ge=1))
    """Bytes held (per inbox subscription) while the agent is busy."""
    functions: Mapping[str, str] = attrs.field(
        factory=dict, converter=_functions, validator=_check_functions, hash=False
    )
    """Capabilities served by a Python callable: name -> ``package.module:function``, or
    the name of a built-in capability (``word_count``). The rest go to the handler or brain."""


# --- the whole container ----------------------------------------------------------------


def _check_agents(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[AgentConfig, ...]
) -> None:
    if not value:
        raise ConfigError("expected at least one agent", key=attribute.name)
    problems: list[ConfigProblem] = []
    first_at: dict[str, int] = {}
    for index, agent in enumerate(value):
        if agent.id in first_at:
            problems.append(
                ConfigProblem(
                    f"{attribute.name}[{index}].id",
                    f"duplicate agent id {agent.id!r} "
                    f"(first at {attribute.name}[{first_at[agent.id]}])",
                )
            )
        else:
            first_at[agent.id] = index
    if problems:
        raise ConfigError.from_problems(problems)


@attrs.frozen(kw_only=True)
class DirectoryConfig:
    """Bounds of each node's directory (who is online)."""

    forget_after: float = attrs.field(default=3600.0, validator=_number(gt=0))
    """Seconds after which an agent that is offline is forgotten."""
    max_agents: int = attrs.field(default=100_000, validator=_integer(ge=1))
    """Most agents a directory holds; when full, the one offline longest makes room."""


@attrs.frozen(kw_only=True)
class VoltaConfig:
    """Everything one container runs: how to reach NATS, the timings, and its agents."""

    nats: NatsConfig = attrs.field(factory=NatsConfig)
    """How to reach NATS."""
    connection: ConnectionMode = ConnectionMode.SHARED
    """One NATS connection for all agents, or one each."""
    heartbeat_interval: float = attrs.field(default=30.0, validator=_number(gt=0))
    """Seconds between an agent's heartbeats."""
    offline_after_missed: int = attrs.field(default=3, validator=_integer(ge=1))
    """Heartbeats missed before an agent counts as offline."""
    request_timeout: float = attrs.field(default=10.0, validator=_number(gt=0))
    """Default timeout of ``ask()`` and capability requests, in seconds."""
    supervision: SupervisionConfig = attrs.field(factory=SupervisionConfig)
    """Restart policy of each agent's own supervisor."""
    directory: DirectoryConfig = attrs.field(factory=DirectoryConfig)
    """Bounds of the node's directory."""
    agents: tuple[AgentConfig, ...] = attrs.field(validator=_check_agents)
    """The agents to run; at least one, ids unique."""
