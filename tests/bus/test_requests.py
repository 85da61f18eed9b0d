"""Which replies the request mux takes for answers: a JetStream PubAck never is."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from volta.bus._requests import is_pub_ack


def reply(data: bytes, headers: dict[str, str] | None = None) -> Msg:
    return Msg(_client=None, subject="_INBOX.x.1", data=data, headers=headers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b'{"stream":"INBOX","seq":1}',
        b'{"stream":"INBOX","seq":7,"duplicate":true}',
        b'{"error":{"code":503,"err_code":10077,"description":"stream store failed"}}',
        b'{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}',
    ],
)
def test_a_pub_ack_and_its_error_form_are_skipped(data: bytes) -> None:
    assert is_pub_ack(reply(data))


@pytest.mark.parametrize(
    "data",
    [
        b'{"error":{"code":"bad_request","message":"invalid message: $: not JSON"}}',
        b'{"error":{"code":"agent_error"}}',
        b'{"ok":true,"result":"atlov","agent":"extern"}',
        b'{"from":"beta","to":"alpha","message":"hi","type":"response"}',
        b'{"agents":[],"next_offset":null}',
        b"",
        b'{"error":{"code":',
    ],
)
def test_answers_are_answers(data: bytes) -> None:
    assert not is_pub_ack(reply(data))


def test_a_reply_with_headers_is_never_a_pub_ack() -> None:
    assert not is_pub_ack(reply(b'{"stream":"INBOX","seq":1}', {"Status": "503"}))
