"""The node child that keeps a :class:`~volta.node.Directory` current and answers for it.

It feeds the table from ``agent.announce`` and ``agent.*.status`` (any process,
any language), expires instances whose heartbeats stop, and answers
``mcp.list_agents`` in the ``volta.directory`` queue group, so each request gets
exactly one reply however many nodes run.

It never waits for heartbeats to learn what it missed: when it joins the bus,
and after every reconnect, it calls the roll (``agent.rollcall``: every node has
its agents announce again, ``_roll_call``), and for a second after that its
router does not trust an empty answer. A status from a new instance of an agent
that another node's instance holds is held back while it asks the nodes who
holds the id (a probe on ``agent.claim``): if no node holds the old instance any
more (its node died without a word), the new one takes over at once; otherwise
the status is refused as a clash.

Nothing a client sends can take it down: every payload is decoded by a total
decoder, every status and every request is a unit of work that fails alone
(counted, logged at a bounded rate, answered where someone waits), and the
table it feeds belongs to the node, so a restart of this child keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable

import attrs
import trio

from volta.bus import (
    Bus,
    BusError,
    ConnectionEvent,
    ConnectionEventKind,
    Delivery,
    Subscription,
)
from volta.core import RateLimitedLog, open_nursery, validators
from volta.protocol import (
    AGENT_ANNOUNCE,
    AGENT_ROLL_CALL,
    AGENT_STATUS_ALL,
    DIRECTORY_QUEUE,
    MCP_LIST_AGENTS,
    MIN_PAGE_BYTES,
    ROLL_CALL_CODEC,
    STATUS_CODEC,
    AgentInfo,
    AgentStatus,
    ListQuery,
    ProtocolError,
    RollCall,
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

SETTLE = 1.0
"""Seconds after a roll call during which the table may still miss agents."""
MAX_HELD_BACK = 1024
"""Most clashing statuses held back at once while the nodes are asked; more are refused."""

Holders = Callable[[Collection[str], float], Awaitable[dict[str, set[str]]]]
"""``holders(agent_ids, window)``: the instances live nodes hold each id by
(:meth:`~volta.node.Identity.holders`)."""

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
        node: str | None = None,
        holders: Holders | None = None,
        window: float = 0.25,
    ) -> None:
        """Args:
        directory: the table it keeps current (the node's: it outlives the service).
        bus: the connection.
        on_change: told of every presence change and identity clash.
        spec: its bounds (only ``sync_timeout`` and ``max_page_bytes`` are the service's;
            the table has its own).
        node: the node's name, in its roll calls.
        holders: how to ask the nodes which instances they hold (None: a clashing
            status is refused until the old instance falls silent).
        window: seconds it waits for the nodes' answers.
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
        self._node = node
        self._holders = holders
        self._window = window
        # (agent id, instance) -> (the newest status that clashed, why it came, the clash)
        self._held_back: dict[tuple[str, str | None], tuple[AgentStatus, str, IdentityClash]] = {}
        self._clash_heard = trio.Event()
        self.roll_calls = 0
        """Roll calls it made (on joining, and after each reconnect)."""
        self.successions = 0
        """Agents whose old instance was shown gone, so that a new one took over."""
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
                bus.watch_events() as events,
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
                    nursery.start_soon(self._settle_clashes)
                    await bus.flush()
                    await self._call_roll()  # the server has our subscriptions: ask
                    nursery.start_soon(self._rejoin, events)
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

    async def _call_roll(self) -> None:
        """Ask every agent to announce again; until their answers are in, the table
        may miss some, and the router does not trust an empty answer."""
        self._directory.settle_until(trio.current_time() + SETTLE)
        try:
            await self._bus.publish(AGENT_ROLL_CALL, ROLL_CALL_CODEC.encode(RollCall(self._node)))
        except BusError as error:
            self._log.info("roll-call", "roll calls not sent", "could not call the roll: %s", error)
            return
        self.roll_calls += 1

    async def _rejoin(self, events: AsyncIterator[ConnectionEvent]) -> None:
        # Subscriptions are back when the reconnect is reported; what was announced
        # while we were away is not: ask for it.
        async for event in events:
            if event.kind is ConnectionEventKind.RECONNECTED:
                await self._call_roll()

    def _hold_back(self, status: AgentStatus, reason: str, clash: IdentityClash) -> bool:
        """Keep a clashing status until the nodes say who holds its id (False: no room,
        or nobody to ask)."""
        if self._holders is None:
            return False
        key = (status.id, status.instance)
        if key not in self._held_back and len(self._held_back) >= MAX_HELD_BACK:
            return False
        self._held_back[key] = (status, reason, clash)
        self._clash_heard.set()
        return True

    async def _settle_clashes(self) -> None:
        # One probe at a time, for every status held back meanwhile: a flood of
        # forged statuses costs one probe per window.
        while True:
            await self._clash_heard.wait()
            self._clash_heard = trio.Event()
            held_back, self._held_back = self._held_back, {}
            assert self._holders is not None
            try:
                ids = {agent_id for agent_id, _instance in held_back}
                alive = await self._holders(ids, self._window)
            except BusError as error:
                self._log.info(
                    "probe", "probes not sent", "could not ask who holds the ids: %s", error
                )
                self._report(clash for _status, _reason, clash in held_back.values())
                continue
            now = trio.current_time()
            for (agent_id, _instance), (status, reason, _clash) in held_back.items():
                gone, change = self._directory.succeed(status, alive.get(agent_id, ()), now, reason)
                if gone and not isinstance(change, IdentityClash):
                    self.successions += 1
                    log.info(
                        "agent %s: no node holds instance %s any more; instance %s (node %s) "
                        "takes over",
                        agent_id,
                        ", ".join(gone),
                        status.instance or "-",
                        status.node or "-",
                    )
                if change is not None:
                    self._report([change])

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
        if (
            isinstance(change, IdentityClash)
            and change.provable
            and self._hold_back(status, reason, change)
        ):
            change = None  # settled once the nodes answer (_settle_clashes)
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
