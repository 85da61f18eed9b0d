"""Environment overrides of the nats section, and command-line overrides.

Rules for this module: no network and no servers; the environment is a plain
dict handed to the loader, never ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from volta.config import ConfigError, load_config, load_config_text, with_overrides

FILE = """
nats:
  url: nats://file:4222
  user: file-user
  password: file-password
agents: [{id: alpha, handler: echo}]
"""


def test_no_environ_means_no_overrides() -> None:
    config = load_config_text(FILE)
    assert config.nats.servers == ("nats://file:4222",)
    assert (config.nats.user, config.nats.password) == ("file-user", "file-password")


def test_environ_overrides_the_nats_section() -> None:
    config = load_config_text(
        FILE,
        environ={
            "NATS_URL": "nats://a:4222, nats://b:4222",
            "NATS_USER": "env-user",
            "NATS_PASSWORD": "env-password",
            "NATS_TOKEN": "env-token",
            "NATS_CREDS": "/run/secrets/node.creds",
            "HOME": "/root",
        },
    )
    assert config.nats.servers == ("nats://a:4222", "nats://b:4222")
    assert config.nats.user == "env-user"
    assert config.nats.password == "env-password"
    assert config.nats.token == "env-token"
    assert config.nats.creds_file == Path("/run/secrets/node.creds")
    assert config.nats.servers == ("nats://a:4222", "nats://b:4222")


def test_unset_or_empty_variables_keep_the_file_values() -> None:
    config = load_config_text(FILE, environ={"NATS_URL": "", "NATS_USER": "other"})
    assert config.nats.servers == ("nats://file:4222",)
    assert (config.nats.user, config.nats.password) == ("other", "file-password")


def test_load_config_applies_the_environ_too(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(FILE)
    assert load_config(path, environ={"NATS_TOKEN": "t"}).nats.token == "t"


def test_a_bad_nats_url_names_the_variable_and_hides_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(FILE, environ={"NATS_URL": "nats://a:1,http://bob:hunter2@b:2"})
    error = caught.value
    assert (error.source, error.key) == ("$NATS_URL", "nats.url")
    assert str(error) == (
        "$NATS_URL: nats.url: 'http://bob:***@b:2' must start with nats://, tls://, ws:// or wss://"
    )


def test_secrets_never_reach_error_messages() -> None:
    cases = {
        # a wrong type for a secret: the value is not shown
        "nats: {password: 987654321}\nagents: [{id: a, handler: echo}]\n": "987654321",
        "nats: {token: [tok-secret-1]}\nagents: [{id: a, handler: echo}]\n": "tok-secret-1",
        # a YAML error on the line of a secret: the line is not quoted
        'nats:\n  password: "pw-secret-2\n': "pw-secret-2",
        "nats: {password: pw-secret-3, password: pw-secret-4}\n": "pw-secret",
        # a typo next to a secret: only the key is named
        "nats: {pasword: pw-secret-5}\nagents: [{id: a, handler: echo}]\n": "pw-secret-5",
        # credentials inside a URL are redacted
        "nats: {url: 'http://u:pw-secret-6@h:1'}\nagents: [{id: a, handler: echo}]\n": (
            "pw-secret-6"
        ),
        # several problems at once, secrets among them
        "nats: {password: [pw-secret-7], pasword: pw-secret-7, token: 7}\n"
        "agents: [{id: a.b, handler: echo}]\n": "pw-secret-7",
    }
    for text, secret in cases.items():
        with pytest.raises(ConfigError) as caught:
            load_config_text(text)
        assert caught.value.key is None or caught.value.key.startswith("nats")
        assert secret not in str(caught.value), str(caught.value)
        assert secret not in repr(caught.value)


def test_with_overrides() -> None:
    config = load_config_text(FILE)
    changed = with_overrides(config, nats_url="nats://x:1,nats://y:2", heartbeat_interval=0.5)
    assert changed.nats.servers == ("nats://x:1", "nats://y:2")
    assert changed.heartbeat_interval == 0.5
    assert changed.nats.password == "file-password"
    assert changed.agents == config.agents
    assert with_overrides(config) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"heartbeat_interval": 0.0},
            "override: heartbeat_interval: expected a number > 0, got 0",
            id="heartbeat",
        ),
        pytest.param(
            {"nats_url": "http://a:1"},
            "override: nats.url: 'http://a:1' must start with nats://, tls://, ws:// or wss://",
            id="url",
        ),
        pytest.param(
            {"nats_url": " , "}, "override: nats.url: expected at least one server URL", id="empty"
        ),
    ],
)
def test_with_overrides_refuses_bad_values(overrides: dict[str, object], message: str) -> None:
    config = load_config_text(FILE)
    with pytest.raises(ConfigError) as caught:
        with_overrides(config, **overrides)  # type: ignore[arg-type]
    assert str(caught.value) == message
