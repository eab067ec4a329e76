"""A request too large to process: measured, passed through unchanged, and said so.

Processing is linear in the body's size (issue 19, item 7), but a body larger than any model reads
is not worth the time: above ``PromptCache(max_body_bytes=...)`` it is sent as it came, with an
empty plan whose decision says why, and counted (``Degradation.BODY_TOO_LARGE``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from promptcache.formats import WireFormat
from promptcache.plan import Plan, Prepared

log = logging.getLogger("promptcache.engine")


def json_size(body: Mapping[str, Any]) -> int | None:
    """Bytes of ``body`` as JSON (an object JSON cannot hold counts as ``null``); None if it has
    no JSON form at all (too deep, an integer too large): the pipeline then says what is wrong."""
    try:
        return len(orjson.dumps(body, default=_as_null, option=orjson.OPT_NON_STR_KEYS))
    except (orjson.JSONEncodeError, TypeError, ValueError):
        return None


def _as_null(value: Any) -> None:
    """orjson's ``default``: an object without a JSON form weighs as ``null`` (only the size is wanted)."""
    del value


def passed_through(
    body: dict[str, Any],
    fmt: WireFormat,
    model: str,
    tenant: str,
    size: int,
    limit: int,
    mode: str,
    *,
    warn: bool,
) -> Prepared:
    """``body`` as it came, with an empty plan saying why (``warn``: log it, once per cache)."""
    why = f"passed through unprocessed: the body is {size:,} bytes of JSON, above max_body_bytes={limit:,}"
    if warn:  # once per cache: the count says how often
        log.warning("promptcache: a %s request %s; raise PromptCache(max_body_bytes=...)", fmt.value, why)
    plan = Plan(
        format=fmt,
        model=model,
        tenant=tenant,
        family="",
        blocks=[],
        digests=[],
        sections=[],
        prefix_end=0,
        prefix_key="",
        conversation_key="",
        decisions=[why],
        mode=mode,
    )
    return Prepared(body=dict(body), plan=plan)
