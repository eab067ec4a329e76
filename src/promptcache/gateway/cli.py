"""``promptcache proxy``: the gateway, for any client, through a base URL.

    promptcache proxy --port 8787 [--host 127.0.0.1] [--openai-upstream URL]
                      [--anthropic-upstream URL] [--store URL] [--policy FILE]
                      [--upstream-timeout SECONDS]

Point a client at it: the openai SDKs with base_url http://HOST:PORT/v1 (OPENAI_BASE_URL), the
anthropic SDKs with base_url http://HOST:PORT (ANTHROPIC_BASE_URL). Each OpenAI Chat Completions,
OpenAI Responses and Anthropic Messages request is rewritten by promptcache for the caller's
tenant (the X-PromptCache-Tenant header, else a keyed hash of the API key, which is forwarded
untouched and never logged or stored), then forwarded; answers stream back as they arrive.

With --store (redis://HOST:PORT/DB, or a directory for SQLite; default $PROMPTCACHE_STORE),
several proxy processes share what they learned; without one, each learns on its own. GET
/healthz and GET /metrics (Prometheus) are served on the same port; usage figures reach
`promptcache stats --store ...`. SIGTERM or Ctrl-C: no new connection is taken, streams in flight
finish, figures are written, then the process exits.

Served by uvicorn (its uvloop event loop and httptools parser when installed, as with the
gateway extra: pip install '.[gateway]').
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

__all__ = ["register"]


def _cli(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from pydantic import ValidationError

        from promptcache.gateway.app import create_app
        from promptcache.gateway.config import GatewayConfig
        from promptcache.policy import PolicyError
    except ModuleNotFoundError as exc:
        print(
            f"promptcache proxy: {exc.name} is not installed; install the gateway extra: "
            "pip install 'promptcache-core[gateway]' (from a clone: pip install '.[gateway]')",
            file=sys.stderr,
        )
        return 2
    fields: dict[str, Any] = {
        "openai_upstream": args.openai_upstream,
        "anthropic_upstream": args.anthropic_upstream,
        "upstream_timeout": args.upstream_timeout,
        "store": args.store or os.environ.get("PROMPTCACHE_STORE") or None,
        "policy": args.policy,
    }
    try:
        config = GatewayConfig(**{k: v for k, v in fields.items() if v is not None})
        # This process is the gateway's own: its collector is set as a server's (gateway.collector).
        app = create_app(config, server_process=True)
    except ValidationError as exc:
        for err in exc.errors():
            print(f"promptcache proxy: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    except (PolicyError, ValueError, TypeError) as exc:
        print(f"promptcache proxy: {exc}", file=sys.stderr)
        return 2
    level = args.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's URL at INFO; a query string can carry an API key (?key=).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    print(
        f"promptcache proxy on http://{args.host}:{args.port} "
        f"(OpenAI: {config.openai_upstream}, Anthropic: {config.anthropic_upstream}, "
        f"store: {'yes' if config.store else 'embedded default'})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # The request line holds the query string, which can hold a key: the app logs its own line.
        access_log=False,
        # The upstream's own Date and Server headers are relayed, not doubled.
        server_header=False,
        date_header=False,
        log_config=None,
    )
    return 0


def register(sub: Any) -> None:
    """Add the ``proxy`` subcommand to the ``promptcache`` parser."""
    p = sub.add_parser(
        "proxy",
        help="an HTTP gateway that applies promptcache to any OpenAI/Anthropic client (base_url)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default: 8787)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--openai-upstream",
        default=None,
        help="OpenAI API base URL, /v1 included (default: https://api.openai.com/v1)",
    )
    p.add_argument(
        "--anthropic-upstream",
        default=None,
        help="Anthropic API base URL (default: https://api.anthropic.com)",
    )
    p.add_argument(
        "--store",
        default=None,
        help="shared store: redis://HOST:PORT/DB or a SQLite directory (default: $PROMPTCACHE_STORE)",
    )
    p.add_argument("--policy", default=None, help="policy file (.yaml, .toml or .json)")
    p.add_argument(
        "--upstream-timeout",
        type=float,
        default=None,
        help="seconds to wait for an upstream to connect or send the next chunk (default: 600)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default: info)",
    )
    p.set_defaults(func=_cli)
