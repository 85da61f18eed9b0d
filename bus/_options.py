"""How to reach NATS: servers, credentials, reconnect policy, buffer sizes.

Credentials may come in the URL (``nats://user:pass@host``), in the options, or
from the environment through :meth:`BusOptions.from_environ`. They never leave
this module in clear: ``repr`` hides them, and :class:`SecretScrubber` removes
them from any text the bus logs or raises.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from volta.core import ConfigError, validators
from volta.core.validators import describe

DEFAULT_URL = "nats://127.0.0.1:4222"
_HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL with its password (or token) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _HIDDEN
    if parts.password is None and parts.username is None:
        return url
    # (netloc, not hostname and port: a port that is not a number must not raise here)
    host = parts.netloc.rpartition("@")[2]
    # A lone userinfo part is a token: hide all of it.
    userinfo = f"{parts.username}:{_HIDDEN}" if parts.password is not None else _HIDDEN
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, ""))


def _url_secret(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    # A lone userinfo part is a token; with a password, the password is the secret.
    return parts.password or parts.username or None


def _check_servers(
    _instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    if not value:
        raise ConfigError("expected at least one server URL", key=attribute.name)
    for url in value:
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigError(f"not a URL: {redact_url(url)!r}", key=attribute.name) from None
        try:
            parts.port  # noqa: B018 (urllib checks the port when it is read)
        except ValueError:
            raise ConfigError(
                f"{redact_url(url)!r}: the port must be a number from 0 to 65535",
                key=attribute.name,
            ) from None
        scheme = parts.scheme
        if scheme not in ("nats", "tls", "ws", "wss"):
            raise ConfigError(
                f"{redact_url(url)!r} must start with nats://, tls://, ws:// or wss://",
                key=attribute.name,
            )


_URLS = validators.strings("servers", item="a URL string", whole="a URL or a list of URLs")


def _split_servers(value: str | Sequence[str]) -> tuple[str, ...]:
    """One URL, several separated by commas (as in ``NATS_URL``), or a sequence of URLs."""
    urls = value.split(",") if isinstance(value, str) else _URLS(value)
    return tuple(url.strip() for url in urls if url.strip())


_positive = validators.integer(ge=1)
_positive_float = validators.number(gt=0)


def _attempts(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ConfigError(
            f"expected -1 (forever) or an integer >= 0, got {describe(value)}", key=attribute.name
        )


@attrs.frozen
class ReconnectPolicy:
    """When to try again after losing the connection: exponential backoff with jitter."""

    initial_delay: float = attrs.field(default=0.1, validator=validators.number(ge=0))
    """Delay before the first attempt, in seconds."""
    max_delay: float = attrs.field(default=5.0, validator=validators.number(ge=0))
    """Upper bound of the delay."""
    multiplier: float = attrs.field(default=2.0, validator=validators.number(ge=1))
    """Growth of the delay from one attempt to the next."""
    jitter: float = attrs.field(default=0.2, validator=validators.number(ge=0, le=1))
    """Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]."""
    max_attempts: int = attrs.field(default=-1, validator=_attempts)
    """Attempts before giving up for good; -1 means forever."""

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        if self.jitter:
            factor = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
            base *= factor
        return min(base, self.max_delay * (1 + self.jitter))


@attrs.frozen
class BusOptions:
    """Everything :func:`open_bus` needs to know."""

    servers: tuple[str, ...] = attrs.field(
        default=(DEFAULT_URL,),
        converter=_split_servers,
        validator=_check_servers,
        metadata={"key": "url"},
    )
    """Server URLs; several mean a cluster (one is picked, others are failover). In YAML
    ``url``: one URL, several separated by commas, or a list."""
    name: str | None = attrs.field(default=None, validator=validators.optional(validators.text))
    """Connection name shown in NATS monitoring (and the start of a node's name)."""
    user: str | None = attrs.field(
        default=None, repr=False, validator=validators.optional(validators.text)
    )
    """User name, when not in the URL."""
    password: str | None = attrs.field(default=None, repr=False)
    """Password, when not in the URL."""
    token: str | None = attrs.field(default=None, repr=False)
    """Auth token, when not in the URL."""
    creds_file: Path | None = None
    """A NATS ``.creds`` file (JWT + NKey seed), relative to the working directory."""
    connect_timeout: float = attrs.field(default=2.0, validator=_positive_float)
    """Seconds allowed for one TCP connect + handshake."""
    retry_initial_connect: bool = False
    """Keep trying the first connection (a container started before its server; a node
    does by default, a client does not)."""
    reconnect: ReconnectPolicy = attrs.field(factory=ReconnectPolicy)
    """How to reconnect after losing the connection."""
    ping_interval: float = attrs.field(default=2.0, validator=_positive_float)
    """Seconds between client PINGs; a silent partition (a link that carries nothing,
    no error either) is noticed within about ``ping_interval * (max_outstanding_pings
    + 2)`` (8 s by default; nats-py's own default of 120 s would take minutes)."""
    max_outstanding_pings: int = attrs.field(default=2, validator=_positive)
    """Unanswered PINGs before the connection counts as dead."""
    outbox_max_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_positive)
    """Bytes of publishes queued by trio code before ``publish`` waits (backpressure)."""
    reconnect_buffer_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_positive)
    """Bytes nats-py may hold while reconnecting."""
    close_timeout: float = attrs.field(default=5.0, validator=_positive_float)
    """Seconds allowed to flush queued publishes when the bus closes."""
    report_interval: float = attrs.field(default=10.0, validator=_positive_float)
    """Seconds between summaries of repeated warnings (malformed input, slow consumers):
    the first of a kind is logged at once, the rest are counted into one line per interval."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: object) -> BusOptions:
        """Options from ``NATS_URL`` (comma-separated), ``NATS_USER``,
        ``NATS_PASSWORD``, ``NATS_TOKEN`` and ``NATS_CREDS``, then ``overrides``.

        Raises:
            ValueError: a URL is malformed.
        """
        values: dict[str, object] = {}
        if environ.get("NATS_URL"):
            values["servers"] = environ["NATS_URL"]
        for env, field in (
            ("NATS_USER", "user"),
            ("NATS_PASSWORD", "password"),
            ("NATS_TOKEN", "token"),
        ):
            if environ.get(env):
                values[field] = environ[env]
        if environ.get("NATS_CREDS"):
            values["creds_file"] = Path(environ["NATS_CREDS"])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def scrubber(self) -> SecretScrubber:
        """A scrubber that knows every secret in these options."""
        secrets = [_url_secret(url) for url in self.servers] + [self.password, self.token]
        return SecretScrubber(
            urls=tuple((url, redact_url(url)) for url in self.servers),
            secrets=tuple(sorted({s for s in secrets if s}, key=len, reverse=True)),
        )

    def redacted_servers(self) -> tuple[str, ...]:
        """The server URLs with credentials hidden."""
        return tuple(redact_url(url) for url in self.servers)


@attrs.frozen
class SecretScrubber:
    """Removes credentials from text before it is logged or raised."""

    urls: tuple[tuple[str, str], ...] = attrs.field(repr=False)
    """Each server URL with its redacted form; whole URLs are replaced first."""
    secrets: tuple[str, ...] = attrs.field(repr=False)
    """Bare secrets (passwords, tokens), longest first."""

    def __call__(self, text: str) -> str:
        """``text`` with every known secret replaced."""
        for url, redacted in self.urls:
            text = text.replace(url, redacted)
        for secret in self.secrets:
            text = text.replace(secret, _HIDDEN)
        return text
