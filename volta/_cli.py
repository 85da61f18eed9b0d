"""The ``volta`` command.

- ``volta run CONFIG.yaml``: one node (a supervisor tree) per container, as its
  entrypoint. NATS comes from the config; ``NATS_URL`` (and ``--nats-url``)
  override it. ``${VAR}`` in the config's values comes from the environment.
- ``volta up``: the embedded default: a local nats-server plus the seed's three
  agents in one process tree. With ``--nats-url`` or ``NATS_URL`` it uses that
  server instead of starting one.

Both wait for NATS if it is not up yet (saying so), and stop in order on
Ctrl-C or SIGTERM. Exit codes: 0 stopped by a signal, 1 the node gave up
(too many restarts) or NATS was unreachable, 2 bad configuration (every problem
of the file is printed, one a line) or every agent's id is taken elsewhere.

``volta agents``, ``volta send``, ``volta ask`` and ``volta capability`` talk to a
running mesh (``volta/_commands.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from volta._commands import COMMANDS, add_client_commands, run_client_command
from volta._logging import configure_logging
from volta._runtime import serve
from volta.bus import (
    BusError,
    NatsServerConfig,
    NatsServerError,
    NatsServerPortInUse,
    run_nats_server,
)
from volta.config import ConfigError, assemble, load_config, shipped_config, with_overrides
from volta.node import IdentityConflict, NodeSpec
from volta.supervisor import SupervisorEscalation

log = logging.getLogger("volta")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="volta", description="Supervised agents over NATS.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--nats-url",
            help="NATS server URL(s), comma-separated (overrides the config and NATS_URL)",
        )
        command.add_argument(
            "--heartbeat-interval",
            type=float,
            metavar="SECONDS",
            help="seconds between heartbeats (overrides the config)",
        )

    run = commands.add_parser("run", help="run the agents of a config file (one per container)")
    run.add_argument("config", type=Path, help="YAML config file")
    common(run)

    up = commands.add_parser("up", help="embedded default: local nats-server + the seed agents")
    up.add_argument(
        "--config",
        default="seed",
        help="a shipped config name (seed, coordinator, researcher, writer) or a YAML path",
    )
    up.add_argument(
        "--port", type=int, default=4222, help="port of the embedded nats-server (0: any free port)"
    )
    up.add_argument(
        "--monitor-port",
        type=int,
        default=8222,
        help="HTTP monitoring port of the embedded server (0: any free port)",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the embedded server keeps JetStream (durable inboxes) across restarts "
        "(default: $VOLTA_STATE_DIR, else $XDG_STATE_HOME/volta, else ~/.local/state/volta; "
        "with --port 0, a temporary folder unless given)",
    )
    up.add_argument(
        "--no-jetstream",
        action="store_true",
        help="run the embedded server without JetStream (direct messages on core NATS only)",
    )
    common(up)
    add_client_commands(commands)
    return parser


def _load(args: argparse.Namespace, environ: Mapping[str, str], path: Path) -> NodeSpec:
    config = load_config(path, environ=environ)
    return with_overrides(
        config, nats_url=args.nats_url, heartbeat_interval=args.heartbeat_interval
    )


def _config_path(name: str) -> Path:
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return Path(str(shipped_config(name)))


async def _run(config: NodeSpec, source: str, environ: Mapping[str, str]) -> None:
    await serve(assemble(config, source=source, environ=environ))


async def _up(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    path = _config_path(args.config)
    # The whole configuration is checked (handlers built) before a server starts for it.
    spec = assemble(_load(args, environ, path), source=str(path), environ=environ)
    if args.nats_url or environ.get("NATS_URL"):
        await serve(spec)
        return
    store = None if args.no_jetstream else _store_dir(args, environ)
    server_config = NatsServerConfig(
        port=args.port or -1,
        monitor_port=args.monitor_port or -1,
        jetstream=not args.no_jetstream,
        store_dir=store,
    )
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    async with run_nats_server(server_config) as server:
        kept = (
            "JetStream off"
            if args.no_jetstream
            else f"JetStream in {store}"
            if store is not None
            else "JetStream in a temporary folder"
        )
        log.info(
            "embedded nats-server at %s (monitoring %s; %s)", server.url, server.monitor_url, kept
        )
        await serve(with_overrides(spec, nats_url=server.url))


def _store_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path | None:
    """Where the embedded server keeps JetStream: one folder per client port, so two
    servers never share one (None: a temporary folder, for ``--port 0``)."""
    if args.state_dir is not None:
        base = Path(args.state_dir)
    elif not args.port:
        return None
    elif environ.get("VOLTA_STATE_DIR"):
        base = Path(environ["VOLTA_STATE_DIR"])
    elif environ.get("XDG_STATE_HOME"):
        base = Path(environ["XDG_STATE_HOME"]) / "volta"
    else:
        base = Path.home() / ".local" / "state" / "volta"
    return base / f"nats-{args.port}" if args.port else base / "nats"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the ``volta`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    configure_logging(args.verbose, quiet=args.command in COMMANDS)
    if args.command in COMMANDS:
        return run_client_command(args, environ)
    try:
        if args.command == "run":
            config = _load(args, environ, args.config)
            trio.run(_run, config, str(args.config), environ)
        else:
            trio.run(_up, args, environ)
    except ConfigError as error:
        print(f"volta: bad configuration: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except IdentityConflict as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except SupervisorEscalation as error:
        print(f"volta: the node gave up: {error}", file=sys.stderr)
        return EXIT_FAILED
    except NatsServerPortInUse as error:
        port = error.address.rpartition(":")[2]
        # (the hint's commands reach 4222 by themselves; a team on another port, if the
        # port taken is the client port asked for, needs its URL)
        client_port = port == str(getattr(args, "port", 4222)) and port != "4222"
        where = f" --nats-url nats://127.0.0.1:{port}" if client_port else ""
        print(
            f"volta: {error}.\n"
            "  Another team on free ports: volta up --port 0 --monitor-port 0\n"
            f"  Or talk to the one running: volta agents{where}; "
            f"volta ask coordinator '...'{where}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (BusError, NatsServerError) as error:
        print(f"volta: {error}", file=sys.stderr)
        return EXIT_FAILED
    log.info("stopped")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
