"""The node child that keeps a :class:`~volta.node.Directory` current and answers for it.

It feeds the table from ``agent.announce`` and ``agent.*.status`` (any process,
any language), expires instances whose heartbeats stop, and answers
``mcp.list_agents`` in the ``volta.directory`` queue group, so each request gets
exactly one reply however many nodes run.

Nothing a client sends can take it down: every payload is decoded by a total
decoder, every status and every request is a unit of work that fails alone
(counted, logged at a bounded rate, answered where someone waits), and the
table it feeds belongs to the node, so a restart of this child keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import attrs
import trio

from volta.bus import Bus, BusError, Delivery, Subscription
from volta.core import RateLimitedLog, open_nursery, validators
from volta.protocol import (
    AGENT_ANNOUNCE,
    AGENT_STATUS_ALL,
    DIRECTORY_QUEUE,
    MCP_LIST_AGENTS,
    MIN_PAGE_BYTES,
    STATUS_CODEC,
    AgentInfo,
    AgentStatus,
    ListQuery,
    ProtocolError,
    agent_id_from_subject,
    decode_agent_page,
    decode_list_query,
    encode_agent_page,
    encode_list_error,
    encode_list_query,
)

from ._directory import (
    FORGET_AFTER,
    MAX_AGENTS,
    MAX_BYTES,
    Directory,
    IdentityClash,
    PresenceChange,
)

log = logging.getLogger("volta.node.directory")

DirectoryEvent = PresenceChange | IdentityClash
"""What the directory service reports."""


@attrs.frozen(kw_only=True)
class DirectorySpec:
    """Bounds of a node's directory (``directory`` in YAML)."""

    forget_after: float = attrs.field(default=FORGET_AFTER, validator=validators.number(gt=0))
    """Seconds after which an agent that is offline is forgotten."""
    max_agents: int = attrs.field(default=MAX_AGENTS, validator=validators.integer(ge=1))
    """Most agents it holds; when full, the one offline longest makes room."""
    max_bytes: int = attrs.field(default=MAX_BYTES, validator=validators.integer(ge=1))
    """About the most memory its entries may take."""
    sync_timeout: float = attrs.field(default=1.0, validator=validators.number(gt=0))
    """Seconds it waits, at start, to learn what another directory knows."""
    max_page_bytes: int = attrs.field(
        default=256 * 1024, validator=validators.integer(ge=MIN_PAGE_BYTES)
    )
    """Largest page of a ``mcp.list_agents`` reply (and never above ``max_payload``)."""


class DirectoryService:
    """The node child that keeps a :class:`Directory` current and answers for it."""

    def __init__(
        self,
        directory: Directory,
        bus: Bus,
        on_change: Callable[[DirectoryEvent], None] | None = None,
        *,
        spec: DirectorySpec | None = None,
    ) -> None:
        """Args:
        directory: the table it keeps current (the node's: it outlives the service).
        bus: the connection.
        on_change: told of every presence change and identity clash.
        spec: its bounds (only ``sync_timeout`` and ``max_page_bytes`` are the service's;
            the table has its own).
        """
        spec = spec or DirectorySpec()
        self._directory = directory
        self._bus = bus
        self._on_change = on_change or (lambda _event: None)
        self._sync_timeout = spec.sync_timeout
        self._max_page_bytes = spec.max_page_bytes
        self._report_every = bus.options.report_interval
        self._sooner = trio.Event()
        self._log = RateLimitedLog(log, bus.options.report_interval)
        self.malformed = 0
        """Statuses that did not decode, or spoke for another agent than their subject."""
        self.clashes = 0
        """Statuses refused (identity clashes, a full table)."""
        self.errors = 0
        """Statuses or requests whose handling failed inside the service."""

    def _report(self, changes: Iterable[DirectoryEvent]) -> None:
        for change in changes:
            if isinstance(change, IdentityClash):
                self.clashes += 1
                self._log.warning(
                    f"clash:{change.agent}",
                    "refused statuses",
                    "status for agent %s (instance %s) refused: %s",
                    change.agent,
                    change.instance or "-",
                    change.reason,
                )
            else:
                # One line per agent and state a period: a flapping agent is summarised,
                # but going offline is never hidden behind having come online.
                self._log.info(
                    f"presence:{change.agent}:{change.after.value}",
                    "presence changes",
                    "agent %s: %s -> %s (%s)",
                    change.agent,
                    change.before.value if change.before else "unknown",
                    change.after.value,
                    change.reason,
                )
            self._on_change(change)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the directory current and answer ``mcp.list_agents`` until cancelled."""
        bus = self._bus
        try:
            async with (
                bus.subscribe(AGENT_ANNOUNCE) as announces,
                bus.subscribe(AGENT_STATUS_ALL) as statuses,
            ):
                await self.sync()  # before joining the queue group, so we never ask ourselves
                async with (
                    bus.subscribe(MCP_LIST_AGENTS, queue=DIRECTORY_QUEUE) as requests,
                    open_nursery() as nursery,
                ):
                    nursery.start_soon(self._observe, announces, "announce")
                    nursery.start_soon(self._observe, statuses, "heartbeat")
                    nursery.start_soon(self._answer, requests)
                    nursery.start_soon(self._expire)
                    await bus.flush()
                    task_status.started()
        finally:
            # What was held back is said before the service goes, not lost with it.
            self._log.flush(closing=True)

    async def sync(self) -> None:
        """Learn what another directory already knows (if one runs).

        Bounded, because the peer may be lying: at most ``sync_timeout`` seconds
        in all and as many agents as the table holds; what came in so far is kept.
        """
        offset: int | None = 0
        agents: list[AgentInfo] = []
        limit = self._directory.max_agents
        with trio.move_on_after(self._sync_timeout):
            try:
                while offset is not None and len(agents) < limit:
                    query = encode_list_query(ListQuery(offset=offset))
                    reply = await self._bus.request(
                        MCP_LIST_AGENTS, query, timeout=self._sync_timeout
                    )
                    page = decode_agent_page(reply.data)
                    next_offset = page.next_offset
                    if next_offset is not None and next_offset <= offset:
                        raise ProtocolError("next_offset", f"does not advance past {offset}")
                    agents += page.agents[: limit - len(agents)]
                    offset = next_offset
            except (BusError, ProtocolError) as error:
                log.debug("no directory to sync from: %s", error)
        self._report(self._directory.merge(agents, trio.current_time()))

    async def _malformed(self, _delivery: Delivery, _error: ProtocolError) -> None:
        self.malformed += 1

    async def _observe(self, subscription: Subscription, reason: str) -> None:
        statuses = subscription.decoded(_status, on_malformed=self._malformed)
        async for delivery, status in statuses:
            try:
                self._observe_one(subscription, delivery, status, reason)
            except Exception as error:  # one status's failure, never the directory's
                self.errors += 1
                self._log.warning(
                    "status-error",
                    "status failures",
                    "status on %s could not be handled: %r",
                    delivery.subject,
                    error,
                )

    def _observe_one(
        self, subscription: Subscription, delivery: Delivery, status: AgentStatus, reason: str
    ) -> None:
        if (
            delivery.subject != AGENT_ANNOUNCE
            and agent_id_from_subject(delivery.subject) != status.id
        ):
            # A status may only speak for the agent its subject names.
            self.malformed += 1
            subscription.malformed(
                delivery, f"a status for {status.id!r} on another agent's subject"
            )
            return
        soonest = self._directory.next_deadline()
        change = self._directory.observe(status, trio.current_time(), reason)
        if change is not None:
            self._report([change])
        if self._directory.next_deadline() < soonest:
            self._sooner.set()  # something expires sooner than the sweeper sleeps for

    async def _answer(self, requests: Subscription) -> None:
        async for request in requests:
            if not request.answerable:
                continue  # nobody waits (or a reflection attempt): nothing to answer
            try:
                reply = self._listing(request.data)
            except Exception as error:  # one request's failure: answer it, go on
                self.errors += 1
                self._log.warning(
                    "list-error", "listing failures", "mcp.list_agents failed: %r", error
                )
                reply = encode_list_error(
                    "agent_error", f"the directory failed: {type(error).__name__}"
                )
            try:
                await self._bus.respond(request, reply)
            except BusError as error:  # never let a reply take the directory down
                self._log.info(
                    "answer",
                    "answers that could not be sent",
                    "could not answer mcp.list_agents: %s",
                    error,
                )

    def _listing(self, data: bytes) -> bytes:
        try:
            query = decode_list_query(data)
        except ProtocolError as error:
            return encode_list_error("bad_request", str(error))
        matching = self._directory.encoded_agents(capability=query.capability, status=query.status)
        # A page fits the server's max_payload, envelope included, and is at most
        # max_page_bytes: a 40-byte request must not make a 1 MB answer.
        budget = min(self._bus.max_payload - 256, self._max_page_bytes)
        return encode_agent_page(matching, query, budget)

    async def _expire(self) -> None:
        # Sleep until the next instance is due to expire (or an agent is due to be
        # forgotten), waking sooner if a status brings a sooner deadline; at least
        # once a report interval, to flush the summaries of held-back log lines.
        while True:
            wake = min(self._directory.next_deadline(), trio.current_time() + self._report_every)
            with trio.move_on_at(wake):
                await self._sooner.wait()
            self._sooner = trio.Event()
            self._report(self._directory.expire(trio.current_time()))
            self._log.flush()


def _status(delivery: Delivery) -> AgentStatus:
    return STATUS_CODEC.decode(delivery.data)
