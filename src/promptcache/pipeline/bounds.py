"""Bounds on what one request may cost: measured, the request sent unchanged there, and said so.

Processing is linear in the body's size (issue 19, item 7), but a body larger than any model reads
is not worth the time: above ``PromptCache(max_body_bytes=...)`` it is sent as it came, with an
empty plan whose decision says why, and counted (``Degradation.BODY_TOO_LARGE``).

Relocation is bounded the same way: a system text or tool schema holding more detected volatile
values than ``PromptCache(max_relocated_values=...)`` is sent in place, not relocated
(:data:`promptcache.pipeline.analyse.MAX_RELOCATED_VALUES`); the plan's decisions say so, with
counts only, and the request is counted (``Degradation.TOO_MANY_VOLATILE``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from promptcache.figures import Degradation
from promptcache.formats import WireFormat
from promptcache.pipeline.learning import slot_label
from promptcache.plan import Plan, Prepared

if TYPE_CHECKING:
    from promptcache.blocks import BlockKind
    from promptcache.pipeline.analyse import TextAnalysis, Tools

log = logging.getLogger("promptcache.engine")


def positive_count(name: str, value: object, unit: str) -> int:
    """``value`` when it is a positive integer (not a bool), else a ValueError naming ``name``.

    >>> positive_count("max_body_bytes", 0, "bytes")
    Traceback (most recent call last):
    ...
    ValueError: max_body_bytes=0: give a positive number of bytes
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: give a positive number of {unit}")
    return value


class Degradations:
    """The requests one cache absorbed a fault for, by :class:`~promptcache.figures.Degradation`."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, kind: Degradation) -> bool:
        """Count one request under ``kind``; True the first time (its one warning is logged then)."""
        with self._lock:
            self._counts[kind.value] += 1
            return self._counts[kind.value] == 1

    def unrelocated(self, what: str, over: list[tuple[str, int]], limit: int) -> None:
        """Count a request whose blocks ``over`` were above the relocation bound ``limit``;
        warn the first time (:func:`warn_unrelocated`)."""
        if self.count(Degradation.TOO_MANY_VOLATILE):
            warn_unrelocated(what, over, limit)

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by :class:`~promptcache.figures.Degradation` value."""
        with self._lock:
            return dict(self._counts)


def unrelocated_blocks(
    texts: Sequence[TextAnalysis], kinds: Sequence[BlockKind], tools: Tools, canonical_tools: bool
) -> list[tuple[str, int]]:
    """The system texts and tools above the relocation bound, sent in place: (label, count of
    values). Tools only once they go out as canonical JSON: until then nothing of theirs is
    relocated anyway."""
    over = [
        (slot_label(k, i), t.unrelocated)
        for i, (t, k) in enumerate(zip(texts, kinds, strict=True))
        if t.unrelocated
    ]
    if canonical_tools and tools.shared.unrelocated:
        over += [(f"tool {name!r}", n) for name, n in tools.shared.unrelocated.items()]
    return over


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


def unrelocated_decisions(over: list[tuple[str, int]], limit: int) -> list[str]:
    """The plan's decisions for the blocks (label, count of detected values) left in place.

    >>> unrelocated_decisions([("system", 25000)], 1000)
    ['system: not relocated: 25,000 volatile values, more than max_relocated_values=1,000; sent in place']
    """
    return [
        f"{label}: not relocated: {n:,} volatile values, "
        f"more than max_relocated_values={limit:,}; sent in place"
        for label, n in over
    ]


def warn_unrelocated(what: str, over: list[tuple[str, int]], limit: int) -> None:
    """Log (the engine does it once per cache) that a request's blocks were above the relocation
    bound: block kinds and counts only (a tool is named by neither its name nor its schema).
    ``what``: the request's wire format, or ``blocks`` for ``PromptCache.plan``."""
    where = ", ".join(
        f"{'a tool schema' if label.startswith('tool ') else label} ({n:,} values)" for label, n in over
    )
    log.warning(
        "promptcache: a request (%s) holds more volatile values than max_relocated_values=%s in %s: "
        "sent in place, not relocated (counted as too_many_volatile); "
        "raise PromptCache(max_relocated_values=...) to relocate them",
        what,
        f"{limit:,}",
        where,
    )
