"""``promptcache invalidate --tag T [--tag T2 ...] [--tenant ID] [--store URL]``: drop tags from the shell.

Without ``--tenant`` a tag is dropped for every tenant; with it, only for that tenant
(a ``public:<tag>`` is shared by all tenants either way).

The store is ``--store``, else ``$PROMPTCACHE_STORE``, else the embedded
default (the SQLite cache in the documented cache directory). Exit codes: 0
all tags invalidated, 1 an invalidation failed (the tag may still be served),
2 bad usage. Tag values are printed only to the terminal that typed them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from promptcache.invalidation import normalize_tags
from promptcache.tiers.router import InvalidationFailed


def _cli(args: argparse.Namespace) -> int:
    from promptcache.artifacts.store import open_store

    try:
        tags = normalize_tags(args.tag)
    except ValueError as exc:
        print(f"promptcache invalidate: {exc}", file=sys.stderr)
        return 2
    spec = args.store or os.environ.get("PROMPTCACHE_STORE") or None
    if spec == "memory://" or (spec is not None and spec.startswith("memory:")):
        print(
            "promptcache invalidate: memory:// is private to one process; nothing to invalidate",
            file=sys.stderr,
        )
        return 2
    try:
        store = open_store(spec)
    except (ValueError, TypeError) as exc:
        print(f"promptcache invalidate: {exc}", file=sys.stderr)
        return 2
    failed = 0
    try:
        for t in tags:
            try:
                gen = store.invalidate(t, tenant=args.tenant)
            except InvalidationFailed as exc:
                failed += 1
                print(f"FAILED  {t}: {exc}", file=sys.stderr)
            else:
                print(f"invalidated {t} (generation {gen})")
    finally:
        store.close()
    return 1 if failed else 0


def register(sub: Any) -> None:
    """Add the ``invalidate`` subcommand to the ``promptcache`` parser."""
    p = sub.add_parser(
        "invalidate",
        help="make every cache entry with a tag unreadable, in every process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tag", action="append", required=True, help="tag to invalidate (repeatable)")
    p.add_argument("--tenant", default=None, help="invalidate for this tenant only (default: every tenant)")
    p.add_argument(
        "--store",
        default=None,
        help="redis://..., redis+cluster://..., redis+sentinel://..., sqlite:///dir or a directory "
        "(default: $PROMPTCACHE_STORE, else the embedded cache)",
    )
    p.set_defaults(func=_cli)
