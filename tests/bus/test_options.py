"""Connection options: parsing, environment, redaction, reconnect policy."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from volta.bus import BusOptions, ReconnectPolicy, redact_url


def test_defaults() -> None:
    options = BusOptions()
    assert options.servers == ("nats://127.0.0.1:4222",)
    assert options.reconnect.max_attempts == -1  # reconnect forever


def test_servers_from_a_comma_separated_string() -> None:
    options = BusOptions(servers="nats://a:4222, nats://b:4222,,")
    assert options.servers == ("nats://a:4222", "nats://b:4222")


@pytest.mark.parametrize("servers", [(), ("http://a:1",), ("localhost:4222",)])
def test_bad_servers_are_refused(servers: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="servers"):
        BusOptions(servers=servers)


def test_bad_server_error_hides_the_password() -> None:
    with pytest.raises(ValueError, match="servers") as caught:
        BusOptions(servers=("http://bob:hunter2@a:1",))
    assert "hunter2" not in str(caught.value)


def test_from_environ() -> None:
    options = BusOptions.from_environ(
        {
            "NATS_URL": "nats://x:1,nats://y:2",
            "NATS_USER": "u",
            "NATS_PASSWORD": "p",
            "NATS_TOKEN": "t",
            "NATS_CREDS": "/c.creds",
            "OTHER": "ignored",
        },
        name="volta",
    )
    assert options.servers == ("nats://x:1", "nats://y:2")
    assert (options.user, options.password, options.token) == ("u", "p", "t")
    assert options.creds_file == Path("/c.creds")
    assert options.name == "volta"


def test_from_empty_environ_gives_defaults() -> None:
    assert BusOptions.from_environ({}) == BusOptions()


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("nats://host:4222", "nats://host:4222"),
        ("nats://bob:hunter2@host:4222", "nats://bob:***@host:4222"),
        ("nats://s3cr3tt0ken@host:4222", "nats://***@host:4222"),
        ("tls://bob:pw@h", "tls://bob:***@h"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_repr_hides_credentials() -> None:
    options = BusOptions(servers=("nats://h:1",), user="bob", password="hunter2", token="tok3n")
    text = repr(options)
    assert "hunter2" not in text
    assert "tok3n" not in text


def test_scrubber_removes_every_secret() -> None:
    options = BusOptions(
        servers=("nats://bob:hunter2@h:1", "nats://t0ken@g:2"), password="pw-xyz", token="abc123"
    )
    scrub = options.scrubber()
    text = scrub(
        "failed nats://bob:hunter2@h:1 and nats://t0ken@g:2 with hunter2 pw-xyz abc123 t0ken"
    )
    for secret in ("hunter2", "t0ken", "pw-xyz", "abc123"):
        assert secret not in text
    assert "nats://bob:***@h:1" in text


def test_reconnect_delays_grow_exponentially_up_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=1.0, multiplier=2.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_reconnect_jitter_stays_within_bounds() -> None:
    policy = ReconnectPolicy(initial_delay=1.0, max_delay=1.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(1, rng) for _ in range(500)]
    assert min(delays) >= 0.8
    assert max(delays) <= 1.2
    assert max(delays) - min(delays) > 0.2  # it really varies


def test_reconnect_policy_validation() -> None:
    with pytest.raises(ValueError, match="jitter"):
        ReconnectPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="multiplier"):
        ReconnectPolicy(multiplier=0.5)
