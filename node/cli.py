"""The ``shoal`` command."""

from __future__ import annotations

import os

# Before numpy loads: OpenBLAS's idle threads otherwise busy-wait after each
# matrix product and steal the cores the top-k selection runs on next
# (docs/decisions/exact-search-kernel.md).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

from pydantic import ValidationError

from node import cli_backup, cli_client, cli_cluster, cli_library, cli_questions, tls
from node.keys import KeysFileError, KeySource
from node.settings import Settings

log = logging.getLogger("shoal.cli")

# flag name -> Settings field; only flags given on the command line override
# the SHOAL_* environment.
SERVE_FLAGS: dict[str, str] = {
    "node_id": "node_id",
    "host": "host",
    "port": "port",
    "data": "data_dir",
    "advertise_url": "advertise_url",
    "fsync": "fsync",
    "snapshot_every": "snapshot_every_entries",
    "snapshot_when_quiet": "snapshot_when_quiet",
    "max_body_bytes": "max_body_bytes",
    "max_answer_bytes": "max_answer_bytes",
    "segment_bytes": "segment_bytes",
    "api_key": "api_key",
    "keys_file": "keys_file",
    "insecure": "insecure",
    "rate_limit": "rate_limit",
    "max_writes_in_flight": "max_writes_in_flight",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "peer_ca": "peer_ca",
    "log_level": "log_level",
    "peers": "peers",
    "cluster_secret": "cluster_secret",
    "force_new_cluster": "force_new_cluster",
    "join": "join",
    "election_timeout": "election_timeout",
    "heartbeat_interval": "heartbeat_interval",
    "temporal_address": "temporal_address",
}


def _serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run one node (a cluster of one by default)")
    serve.add_argument("--node-id", help="this node's id [SHOAL_NODE_ID, default n1]")
    serve.add_argument("--host", help="listen address [SHOAL_HOST, default 127.0.0.1]")
    serve.add_argument("--port", type=int, help="listen port [SHOAL_PORT, default 7700]")
    serve.add_argument("--data", help="data directory [SHOAL_DATA_DIR, default ./data]")
    serve.add_argument("--advertise-url", help="URL other nodes and clients use for this node")
    serve.add_argument(
        "--fsync",
        choices=["always", "batch", "off"],
        help="when the log is forced to disk [SHOAL_FSYNC, default always]",
    )
    serve.add_argument(
        "--snapshot-every",
        type=int,
        help="log entries between snapshots [SHOAL_SNAPSHOT_EVERY_ENTRIES, default 10000]",
    )
    serve.add_argument(
        "--snapshot-when-quiet",
        type=float,
        help="seconds without a new applied entry after which a node snapshots what it "
        "applied since its last snapshot; 0: never [SHOAL_SNAPSHOT_WHEN_QUIET, default 2]",
    )
    serve.add_argument("--max-body-bytes", type=int, help="largest accepted request body")
    serve.add_argument(
        "--max-answer-bytes",
        type=int,
        help="largest answer a node builds; larger asks get a 422 that says what to ask "
        "for instead [SHOAL_MAX_ANSWER_BYTES, default 64 MiB]",
    )
    serve.add_argument(
        "--segment-bytes",
        type=int,
        help="size of a WAL segment file [SHOAL_SEGMENT_BYTES, default 64 MiB]",
    )
    serve.add_argument(
        "--api-key",
        help="require this key on API requests; it has the admin "
        "role [SHOAL_API_KEY; prefer the variable: flags show in ps]",
    )
    serve.add_argument(
        "--keys-file",
        help="a JSON list of {key|sha256, role} (read, write or "
        "admin), read again on SIGHUP [SHOAL_KEYS_FILE]",
    )
    serve.add_argument(
        "--rate-limit",
        type=float,
        help="requests a second per client (its "
        "API key, or its address); more get 429 [SHOAL_RATE_LIMIT, default none]",
    )
    serve.add_argument(
        "--max-writes-in-flight",
        type=int,
        help="writes this node holds at "
        "once; more get 429 [SHOAL_MAX_WRITES_IN_FLIGHT, default 4096]",
    )
    serve.add_argument("--tls-cert", help="serve HTTPS with this certificate [SHOAL_TLS_CERT]")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM) [SHOAL_TLS_KEY]")
    serve.add_argument(
        "--peer-ca",
        help="node-to-node mutual TLS: peers present certificates "
        "this CA signed, and this node checks theirs [SHOAL_PEER_CA]",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback --host with no API key [SHOAL_INSECURE]",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--peers",
        help="every voter, this node included: n1=http://host:port,n2=... [SHOAL_PEERS]; "
        "read when the cluster is first started (later a different list is refused); "
        "left out on a fresh data directory: a cluster of one",
    )
    serve.add_argument("--cluster-secret", help="shared by the nodes [SHOAL_CLUSTER_SECRET]")
    serve.add_argument(
        "--join",
        metavar="URL[,URL...]",
        help="a fresh node asks this cluster to add it as a learner [SHOAL_JOIN]",
    )
    serve.add_argument(
        "--force-new-cluster",
        action="store_const",
        const=True,
        help="make this node's data a new cluster of one (after losing a majority for good; "
        "entries it holds that were never committed are kept: see docs/operations.md)",
    )
    serve.add_argument(
        "--election-timeout",
        type=float,
        help="seconds without a leader before an election (randomised up to twice this) "
        "[SHOAL_ELECTION_TIMEOUT, default 1.0]",
    )
    serve.add_argument(
        "--temporal-address",
        help="Temporal server for questions (/ask) [SHOAL_TEMPORAL_ADDRESS]",
    )
    serve.add_argument(
        "--heartbeat-interval", type=float, help="seconds between leader heartbeats [default 0.15]"
    )


def _settings(args: argparse.Namespace) -> Settings:
    given = {
        field: getattr(args, flag)
        for flag, field in SERVE_FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    return Settings(**given)


def _refusal_to_serve(settings: Settings, argv: Sequence[str]) -> str | None:
    """Why this node must not start as configured (None: it may). Warns of
    secrets given as flags, which every user of the machine sees in ps."""
    for flag in ("--api-key", "--cluster-secret"):
        if any(arg == flag or arg.startswith(flag + "=") for arg in argv):
            variable = "SHOAL_" + flag[2:].upper().replace("-", "_")
            log.warning("%s on the command line shows in ps to every user of this machine; "
                        "set %s instead", flag, variable)  # fmt: skip
    if settings.exposed_without_key() and not settings.insecure:
        return (f"--host {settings.host} serves beyond this machine, and no API key is set: "
                "anyone who reaches it could read and change every library. Set "
                "SHOAL_API_KEY or --keys-file, or give --insecure to serve it open")  # fmt: skip
    if settings.insecure and settings.exposed_without_key():
        log.warning("serving %s with no API key (--insecure)", settings.host)
    try:
        KeySource(settings.keys_file, settings.api_key)
    except KeysFileError as exc:
        return str(exc)
    return tls.check_files(settings.tls_cert, settings.tls_key, settings.peer_ca)


def serve(settings: Settings) -> int:
    import uvicorn

    class Server(uvicorn.Server):
        """Exits 0 after a graceful shutdown on SIGTERM/SIGINT.

        uvicorn re-raises the signal once shut down, which makes a clean stop
        look like a kill to whoever reads the exit status.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

        handing_over = False
        hand_over_task: asyncio.Task[None] | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            engine = app.state.engine
            loop = engine.loop
            if loop is None or self.handing_over or self.should_exit:
                self._exit_now(sig, frame)
                return
            # A leader hands over while it still serves, then shuts down as
            # any node does; a second signal cuts the hand-over short.
            self.handing_over = True

            async def hand_over_then_exit() -> None:
                try:
                    await engine.hand_over_before_stopping()
                finally:
                    self._exit_now(sig, frame)

            def start() -> None:  # the task is kept: the loop holds tasks only weakly
                self.hand_over_task = loop.create_task(hand_over_then_exit())

            loop.call_soon_threadsafe(start)

        def _exit_now(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # Requests waiting on the cluster would hold the drain open until
            # their own timeouts; answer them as soon as the loop runs.
            engine = app.state.engine
            if engine.loop is not None:
                engine.loop.call_soon_threadsafe(engine.begin_shutdown)

    from node.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings, exit_on_failure=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        lifespan="on",
        timeout_graceful_shutdown=30,
        http=tls.peer_cert_protocol() if settings.peer_ca is not None else "auto",
        **tls.server_options(settings.tls_cert, settings.tls_key, settings.peer_ca),
    )
    engine = app.state.engine

    def reload_certificate() -> None:
        contexts = [context for context in (config.ssl, engine.peer_tls()) if context]
        tls.reload(settings.tls_cert, settings.tls_key, settings.peer_ca, contexts)

    if settings.tls_cert is not None:
        app.state.reloads.append(reload_certificate)
    server = Server(config)
    server.run()
    return 0 if server.started else 1


def _cluster_parser(commands: Any) -> None:
    cluster = commands.add_parser("cluster", help="run a local cluster, or operate one")
    actions = cluster.add_subparsers(dest="action", required=True)
    cli_cluster.add_actions(actions)
    up = actions.add_parser("up", help="start a local cluster of processes on loopback")
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    up.add_argument("--base-port", type=int, default=7701, help="port of n1; n2 gets the next")
    up.add_argument("--data", default="./data", help="one directory per node under this one")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shoal", description="Shoal vector database")
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands)
    _cluster_parser(commands)
    cli_questions.add_parsers(commands)
    cli_client.add_parsers(commands)
    cli_library.add_parsers(commands)
    cli_backup.add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command == "backup":
        return cli_backup.run_backup(args)
    if args.command == "restore":
        return cli_backup.run_restore(args)
    if args.command in ("status", "import", "query"):
        return cli_client.run(args)
    if args.command == "library":
        return cli_library.run(args)
    if args.command == "worker":
        return cli_questions.run_worker(args)
    if args.command == "ask":
        return cli_questions.run_ask(args)
    if args.command == "cluster" and args.action != "up":
        return cli_cluster.run(args)
    if args.command == "cluster":
        from pathlib import Path

        from node.local_cluster import cluster_up

        if not 1 <= args.nodes <= 9:
            parser.error("--nodes must be between 1 and 9")
        return cluster_up(args.nodes, args.base_port, Path(args.data))
    if args.command == "serve":
        try:
            settings = _settings(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            print(f"shoal: invalid settings: {problems}", file=sys.stderr)  # noqa: T201
            return 2
        refusal = _refusal_to_serve(settings, argv if argv is not None else sys.argv[1:])
        if refusal:
            print(f"shoal: {refusal}", file=sys.stderr)  # noqa: T201
            return 2
        return serve(settings)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
