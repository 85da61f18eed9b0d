"""The journal of a unit of work: what it already did, so that it resumes instead of
starting over when its message is delivered again (its node died in the middle).

A unit that came through a durable inbox (``_durable.py``) has a journal: the
subject ``agent.<id>.journal.<key>`` (the key a digest of the message's sender and id
and of where and when the stream stored it) in the stream
``<durable.stream>_JOURNAL``. What a handler does that costs
something and must not be done twice is written there as it is done, each entry
stored (PubAck) before the unit goes on: a brain writes each model reply and each
tool result (``brains/_brain.py``). When the message comes again, the unit reads its
journal first; a brain then takes the replies and results it finds from there
instead of calling the model or the tool again, so nothing answered is paid twice,
no ask is sent twice, the budget spent so far counts again (from the replies'
usage) and the deadline is the task's, as before. The progress of a resumed unit
says ``resumed``.

A journal ends with its unit: once the message is acked, its subject is purged. The
stream's ``max_age`` bounds what a unit that never ends leaves behind.

Entries are JSON objects ``{"step": n, "model": {...}}`` (a model reply) and
``{"step": n, "tool": <tool_use id>, "result": {...}}``; entries that do not decode
are skipped (the work is done again).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from volta.bus import Bus, BusError, JetStream, StreamPublisher
from volta.protocol import (
    PayloadEncodeError,
    ProtocolError,
    decode_json,
    encode_json,
    validate_own_agent_id,
)

log = logging.getLogger("volta.actors.journal")

JOURNALS_ALL = "agent.*.journal.*"
"""What the journal stream captures: every agent's unit journals."""


def journal_subject(agent_id: str, sender: str, message_id: str, stored: tuple[int, int]) -> str:
    """The journal of one stored message to an agent: ``agent.<id>.journal.<digest>``.

    The digest covers where and when the stream stored the message (``stored``: its
    sequence and time in ns), not only what its sender chose: a sender cannot name the
    journal of its own message before it is stored, and nobody can without reading the
    stream. (Who may publish there at all is the permissions' job.)
    """
    text = f"{sender}\0{message_id}\0{stored[0]}\0{stored[1]}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return f"agent.{validate_own_agent_id(agent_id)}.journal.{digest}"


class Journal:
    """One unit's journal (made by :meth:`open`)."""

    def __init__(
        self,
        bus: Bus,
        stream: str,
        subject: str,
        publisher: StreamPublisher,
        entries: list[Mapping[str, Any]],
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._subject = subject
        self._publisher = publisher
        self._models: dict[int, Mapping[str, Any]] = {}
        self._tools: dict[tuple[int, str], Mapping[str, Any]] = {}
        for entry in entries:
            self._take(entry)
        self.resumed = bool(self._models or self._tools)
        self._written = bool(entries)  # something to purge at the end
        """Whether the unit did some of its work before (it is resuming)."""
        self.recalled = 0
        """Entries taken from the journal instead of doing the work again."""
        self.unwritten = 0
        """Entries that could not be stored (their work would be done again)."""

    @classmethod
    async def open(
        cls, bus: Bus, stream: str, subject: str, publisher: StreamPublisher, *, read: bool
    ) -> Journal:
        """The journal at ``subject``; ``read``: read what is there (a message delivered
        again), else start empty (a first delivery has none).

        Raises:
            BusError: it could not be read.
        """
        entries: list[Mapping[str, Any]] = []
        if read:
            for payload in await JetStream(bus).stored(stream, subject):
                try:
                    entry = decode_json(payload)
                except ProtocolError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
        return cls(bus, stream, subject, publisher, entries)

    def _take(self, entry: Mapping[str, Any]) -> None:
        step = entry.get("step")
        if type(step) is not int:
            return
        model, tool, result = entry.get("model"), entry.get("tool"), entry.get("result")
        # The first entry of a step counts (the unit's own, written as it went); a later
        # one for the same step is never taken over it.
        if isinstance(model, dict):
            self._models.setdefault(step, model)
        elif isinstance(tool, str) and isinstance(result, dict):
            self._tools.setdefault((step, tool), result)

    def model_reply(self, step: int) -> Mapping[str, Any] | None:
        """The model reply of ``step``, if the unit had it before."""
        reply = self._models.get(step)
        if reply is not None:
            self.recalled += 1
        return reply

    def tool_result(self, step: int, tool_use_id: str) -> Mapping[str, Any] | None:
        """The result of one tool call of ``step``, if the unit had it before."""
        result = self._tools.get((step, tool_use_id))
        if result is not None:
            self.recalled += 1
        return result

    async def record_model(self, step: int, reply: Mapping[str, Any]) -> None:
        """Write a model reply down (stored before the unit goes on; if it cannot be,
        the unit goes on and would make the call again after a crash)."""
        await self._write({"step": step, "model": dict(reply)}, f"{step}.model")

    async def record_tool(self, step: int, tool_use_id: str, result: Mapping[str, Any]) -> None:
        """Write a tool call's result down (stored before the unit goes on)."""
        entry = {"step": step, "tool": tool_use_id, "result": dict(result)}
        await self._write(entry, f"{step}.tool.{tool_use_id}")

    async def _write(self, entry: Mapping[str, Any], name: str) -> None:
        msg_id = f"{self._subject}.{name}"
        try:
            await self._publisher.publish(self._subject, encode_json(entry), msg_id)
        except (BusError, PayloadEncodeError) as error:
            self.unwritten += 1
            log.warning("journal %s: entry %s not stored: %s", self._subject, name, error)
            return
        self._written = True
        self._take(entry)

    async def close(self) -> None:
        """The unit is over: let its journal go (purged from the stream)."""
        if not self._written:
            return  # (most units write nothing: no request for them)
        try:
            await JetStream(self._bus).purge(self._stream, self._subject)
        except BusError as error:  # it expires with the stream's max_age
            log.debug("journal %s not purged: %s", self._subject, error)
