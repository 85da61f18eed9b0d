"""The ``volta`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import trio

from volta.bus import NatsServerConfig, open_bus, run_nats_server

log = logging.getLogger("volta")


async def _up(args: argparse.Namespace) -> None:
    async with run_nats_server(NatsServerConfig(monitor=True)) as server:
        log.info("embedded nats-server at %s (monitoring %s)", server.url, server.monitor_url)
        async with open_bus(server.url, name="volta-up") as bus, bus.watch_events() as events:
            log.info("connected; press Ctrl-C to stop")
            async for event in events:
                log.info("bus event: %s %s", event.kind.value, event.detail)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volta`` console script."""
    parser = argparse.ArgumentParser(prog="volta", description="Supervised agents over NATS")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the embedded default (a local nats-server)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        trio.run(_up, args)
    except KeyboardInterrupt:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
