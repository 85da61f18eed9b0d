"""Subject names and the id checks that keep them from being reshaped."""

from __future__ import annotations

import pytest

from volta.protocol import (
    AGENT_ANNOUNCE,
    AGENT_BROADCAST,
    CAPABILITY_REQUEST,
    MCP_LIST_AGENTS,
    InvalidSubject,
    agent_id_from_subject,
    agent_message,
    agent_status,
    capability_endpoint,
    is_answerable,
    validate_agent_id,
    validate_subject,
)


def test_the_seed_subjects() -> None:
    assert agent_message("alpha") == "agent.alpha.message"
    assert agent_status("alpha") == "agent.alpha.status"
    assert AGENT_BROADCAST == "agent.broadcast"
    assert AGENT_ANNOUNCE == "agent.announce"
    assert MCP_LIST_AGENTS == "mcp.list_agents"
    assert CAPABILITY_REQUEST == "capability.request"


@pytest.mark.parametrize("agent_id", ["a", "alpha", "agent-1", "A_b-9", "x" * 64])
def test_valid_agent_ids(agent_id: str) -> None:
    assert validate_agent_id(agent_id) == agent_id


@pytest.mark.parametrize(
    "agent_id",
    ["", "a.b", "*", ">", "a*", "a>", "a b", "a\tb", "a\nb", "x" * 65, "é", "a/b", "a.>"],
)
def test_ids_that_would_reshape_a_subject_are_refused(agent_id: str) -> None:
    with pytest.raises(InvalidSubject, match="invalid agent id"):
        agent_message(agent_id)
    with pytest.raises(InvalidSubject):
        agent_status(agent_id)


def test_non_string_id_is_refused() -> None:
    with pytest.raises(InvalidSubject):
        validate_agent_id(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("subject", ["a", "a.b.c", "agent.alpha.message", "_INBOX.x.1"])
def test_valid_subjects(subject: str) -> None:
    assert validate_subject(subject) == subject


@pytest.mark.parametrize("subject", ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "*"])
def test_invalid_publish_subjects(subject: str) -> None:
    with pytest.raises(InvalidSubject):
        validate_subject(subject)


@pytest.mark.parametrize("subject", ["a.*", "a.>", "*.b", "agent.*.status", ">"])
def test_wildcards_allowed_for_subscriptions(subject: str) -> None:
    assert validate_subject(subject, wildcards=True) == subject


@pytest.mark.parametrize("subject", ["a.>.b", "a.b*", "a.>x", "a..*"])
def test_misplaced_wildcards_are_refused(subject: str) -> None:
    with pytest.raises(InvalidSubject):
        validate_subject(subject, wildcards=True)


def test_agent_id_from_subject() -> None:
    assert agent_id_from_subject("agent.alpha.message") == "alpha"
    assert agent_id_from_subject("agent.beta.status") == "beta"
    assert agent_id_from_subject("agent.broadcast") is None
    assert agent_id_from_subject("agent.a.b.status") is None
    assert agent_id_from_subject("other.alpha.status") is None


def test_capability_endpoints() -> None:
    assert capability_endpoint("word_count") == "capability.invoke.word_count"
    for bad in ("", "a.b", "*", ">", "a b", "x" * 65):
        with pytest.raises(InvalidSubject, match="invalid capability name"):
            capability_endpoint(bad)


@pytest.mark.parametrize(
    "reply",
    [
        "agent.broadcast",
        "agent.beta.inbox",
        "task.t1.progress",
        "$SYS.REQ.SERVER.PING",
        "$JS.API.STREAM.DELETE.VOLTA_INBOX",
        "$JS.hub.API.STREAM.DELETE.VOLTA_INBOX",  # the API under a domain
        "$KV.config.key",  # a KV write
        "$O.store.chunk",
        "$JS.ACK.VOLTA_INBOX.beta.1.2.3.4.5",
        "_INBOX.a*",
        "_INBOX.has space",
    ],
)
def test_no_answer_goes_to_volta_or_server_subjects(reply: str) -> None:
    assert not is_answerable(reply)


@pytest.mark.parametrize("reply", ["_INBOX.abc.1", "my-app.replies.7"])
def test_a_client_inbox_is_answerable(reply: str) -> None:
    assert is_answerable(reply)
