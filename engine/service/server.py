"""Running the service: uvicorn for HTTP, a Flight SQL server beside it, and the CLI commands.

``petrel serve`` serves the HTTP API (and, with ``--flight-port``, Flight SQL)
from one process on one machine; ``petrel serve --ray-serve`` deploys the
same app as a Ray Serve deployment on the cluster ``--ray-address`` names,
with ``--replicas`` copies.  ``petrel tokens create|list|revoke`` manage
tenants without starting Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from engine.service.core import Service, ServiceConfig
from engine.service.http import build_app
from engine.service.tenants import Limits, TokenStore
from storage.objectstore import ObjectStore


@dataclass
class RunningServer:
    """A service listening on loopback or a host: its HTTP and Flight addresses, and how to stop it."""

    service: Service
    http: uvicorn.Server
    http_port: int
    flight: Any = None
    flight_port: int | None = None
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.http.config.host}:{self.http_port}"

    def stop(self) -> None:
        self.http.should_exit = True
        if self.flight is not None:
            self.flight.shutdown()
        for thread in self.threads:
            thread.join(timeout=10)
        self.service.close()


def start(config: ServiceConfig, host: str = "127.0.0.1", port: int = 0, flight_port: int | None = None,
          service: Service | None = None) -> RunningServer:
    """Start the HTTP server (and Flight SQL when ``flight_port`` is given) in background threads."""
    service = service or Service(config)
    server = uvicorn.Server(uvicorn.Config(build_app(service), host=host, port=port, log_level="warning",
                                           lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, name="petrel-http", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise OSError(f"the HTTP server could not start on {host}:{port}")
        thread.join(timeout=0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    running = RunningServer(service, server, bound, threads=[thread])
    if flight_port is not None:
        from engine.service.flight import FlightSqlServer

        flight = FlightSqlServer(service, f"grpc://{host}:{flight_port}")
        running.flight, running.flight_port = flight, flight.port
        flight_thread = threading.Thread(target=flight.serve, name="petrel-flight", daemon=True)
        flight_thread.start()
        running.threads.append(flight_thread)
    return running


def register(subparsers: Any) -> None:
    """Add ``serve`` and ``tokens`` to the ``petrel`` command; each sets ``args.standalone(args)``."""
    serve = subparsers.add_parser("serve", help="serve the HTTP API and Arrow Flight SQL")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port")
    serve.add_argument("--flight-port", type=int, help="Arrow Flight SQL port (default: no Flight SQL)")
    serve.add_argument("--no-auth", action="store_true",
                       help="serve --namespace to everyone without tokens (for a laptop; never on a network)")
    serve.add_argument("--ray-serve", action="store_true", help="deploy the HTTP API on Ray Serve instead")
    serve.add_argument("--replicas", type=int, default=2, help="Ray Serve replicas (with --ray-serve)")
    serve.set_defaults(standalone=run_serve)

    tokens = subparsers.add_parser("tokens", help="create, list and revoke tenant tokens")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token for a namespace (printed once)")
    create.add_argument("--namespace", dest="token_namespace", required=True)
    create.add_argument("--allow", action="append", default=[], metavar="PREFIX",
                        help="a URL prefix table functions may read (s3://bucket/dims/); repeatable")
    create.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help=f"a tenant limit ({', '.join(Limits.__dataclass_fields__)}); repeatable")
    create.add_argument("--description", default="")
    actions.add_parser("list", help="list tokens (their ids, never the tokens)")
    revoke = actions.add_parser("revoke", help="revoke a token, by the token or its id")
    revoke.add_argument("token")
    tokens.set_defaults(standalone=run_tokens)


def _limits(pairs: list[str]) -> Limits:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        values[name.strip()] = float(value) if "." in value else int(value)
    return Limits.from_json(values)


def run_tokens(args: argparse.Namespace) -> int:
    tokens = TokenStore(ObjectStore(args.warehouse))
    if args.action == "create":
        token, tenant = tokens.create(args.token_namespace, _limits(args.limit), args.allow, args.description)
        print(token)
        print(f"token {tenant.token_id} for namespace {tenant.namespace!r}; it is shown only now", file=sys.stderr)
    elif args.action == "list":
        for tenant, revoked in tokens.list():
            print(json.dumps({**tenant.to_json(), "revoked": revoked}))
    else:
        tenant = tokens.revoke(args.token)
        print(f"revoked token {tenant.token_id} of namespace {tenant.namespace!r}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    config = ServiceConfig(warehouse=args.warehouse, ray_address=args.ray_address, auth=not args.no_auth,
                           namespace=args.namespace)
    if args.ray_serve:
        from engine.service.deployment import deploy

        deploy(config, host=args.host, port=args.port, replicas=args.replicas)
        return 0
    service = Service(config)
    flight = None
    if args.flight_port is not None:
        from engine.service.flight import FlightSqlServer

        flight = FlightSqlServer(service, f"grpc://{args.host}:{args.flight_port}")
        threading.Thread(target=flight.serve, name="petrel-flight", daemon=True).start()
    print(f"petrel: HTTP on http://{args.host}:{args.port}"
          + (f", Flight SQL on grpc://{args.host}:{flight.port}" if flight else ""), file=sys.stderr, flush=True)
    try:
        uvicorn.run(build_app(service), host=args.host, port=args.port, log_level="warning", lifespan="off")
    finally:
        if flight is not None:
            flight.shutdown()
        service.close()
    return 0
