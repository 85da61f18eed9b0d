"""Running an assembled node until a signal stops it (``volta run`` and ``volta up``)."""

from __future__ import annotations

import gc
import logging
import signal

import trio

from volta.actors import Handler
from volta.actors._functions import FunctionCapabilities
from volta.core import open_nursery
from volta.node import Node, NodeSpec
from volta.supervisor import stop_on_signals

log = logging.getLogger("volta")


def _innermost(handler: Handler) -> Handler:
    while isinstance(handler, FunctionCapabilities):
        handler = handler.handler
    return handler


async def serve(
    spec: NodeSpec, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a node until SIGINT or SIGTERM, then stop it in order.

    Raises:
        IdentityConflict: every agent's id was already taken (nothing started).
        SupervisorEscalation: the node gave up (too many agent restarts).
        ConnectFailed: NATS could not be reached (and retrying was off).
    """
    node = Node(spec)
    async with open_nursery() as nursery:
        await nursery.start(stop_on_signals, nursery.cancel_scope, (signal.SIGINT, signal.SIGTERM))
        await nursery.start(node.run)
        # Everything built so far lives as long as the node: move it out of the
        # cyclic collector's sight (with 1,000 agents a full collection took 340 ms).
        gc.freeze()
        for agent in node.agents.values():
            handler = agent.spec.handler
            describe = getattr(_innermost(handler), "describe", None)  # type: ignore[arg-type]
            if callable(describe):
                log.info("agent %s thinks with %s", agent.id, describe())
        ids = ", ".join(node.agents)
        log.info("node running with agents %s; Ctrl-C (SIGINT) or SIGTERM stops it", ids)
        task_status.started(node)
