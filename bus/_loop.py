"""The asyncio event loop that nats-py runs on, hosted inside trio by trio-asyncio.

Only ``bus/`` touches asyncio. Every bus in a trio run shares one loop: the first
``open_bus`` opens it, later ones (in the same task tree) reuse it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio_asyncio

from volta._nursery import unwrap_lone_exception


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """Make sure a trio-asyncio loop runs for the duration of the block."""
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    with unwrap_lone_exception():
        async with trio_asyncio.open_loop():
            yield
