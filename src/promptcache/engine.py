"""``PromptCache``: the one object the framework integrations use.

A detected volatile value stays in place until the family shows it changing;
from then on it moves after the cached prefix:

>>> cache = PromptCache()
>>> def call(date):
...     body = {"model": "gpt-4o", "messages": [
...         {"role": "system", "content": f"You help.\\nCurrent date: {date}"},
...         {"role": "user", "content": "hi"}]}
...     return cache.prepare_request(body, format="openai-chat").body["messages"]
>>> [m["role"] for m in call("2024-05-15")]
['system', 'user']
>>> moved = call("2024-05-16")
>>> [m["role"] for m in moved], moved[0]["content"]
(['system', 'system', 'user'], 'You help.')
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from promptcache.artifacts import ResponseCache, RetrievalCache, ToolOutputCache, open_store
from promptcache.blocks import Block, BlockKind, Stability, Trust, trusted_block
from promptcache.canonical import (
    VOLATILE_PATTERNS,
    VOLATILE_VERIFY,
    Fragment,
    canonical_json,
    canonical_text,
    digest,
    find_volatile,
    json_text_is_canonical,
    relocate_json,
    relocate_spans,
)
from promptcache.catalog import default_catalog
from promptcache.detect import (
    SENSITIVE_PATTERNS,
    SENSITIVE_SCANNER,
    VERIFY,
    classes_of,
    scan_sensitive,
)
from promptcache.explain import SlotPrint, Snapshot
from promptcache.fingerprint import Record, common_prefix, str_values_only
from promptcache.fingerprint import same as same_value
from promptcache.fingerprint import take as take_record
from promptcache.formats import WireFormat, parse_format
from promptcache.keys import KeyContract, chain_hash, derive_key
from promptcache.layout import arrange
from promptcache.plan import Hint, Plan, Prepared
from promptcache.policy import Policy
from promptcache.providers.hints import HintContext, apply_hints, class_set, first_blocked, ttl_options
from promptcache.scan import Hit, Scanner
from promptcache.stats import CacheStats, StatsRecorder, persist_stats, recorder_for
from promptcache.telemetry.hooks import span as telemetry_span
from promptcache.telemetry.hooks import tracing as telemetry_tracing
from promptcache.tiers.router import TieredStore
from promptcache.usage import CacheUsage
from promptcache.volatility import SlotVolatility
from promptcache.wire import WireAdapter, WireFormatError, WireParts, get_adapter, normalize_message_text

if TYPE_CHECKING:
    from hashlib import _Hash

    from promptcache.artifacts.retrieval import Authorizer
    from promptcache.catalog import Catalog
    from promptcache.providers.gemini_cache import GeminiCacheManager, GeminiTransport
    from promptcache.providers.prewarm import PrewarmReport

Mode = Literal["active", "shadow"]

_STATIC_SCANNER = Scanner(
    [*VOLATILE_PATTERNS, *((k, p) for k, _, p in SENSITIVE_PATTERNS)],
    {**VOLATILE_VERIFY, **VERIFY},
)

VOLATILE_HEADER = (
    "<volatile_context>\n"
    "These values were moved here from earlier in the prompt so that its stable part "
    "can be cached; read each one as part of the section it names.\n"
)
VOLATILE_FOOTER = "</volatile_context>"


@dataclass(slots=True)
class _Text:
    """A static text block after canonical form and regex relocation (memoized)."""

    stable: str
    fragments: list[Fragment]
    lines: list[str]
    line_crcs: list[int]
    line_numbers: list[int]  # caller's (canonical) line number of each stable line
    data_classes: tuple[str, ...]
    raw_crc: int
    digest: str
    block: Block
    canonical: str  # before any relocation
    spans: list[tuple[int, int, str]]  # detected volatile spans of ``canonical``
    canonical_digest: str | None = None  # computed when the canonical text is sent as is


@dataclass(slots=True)
class _ToolSet:
    """The canonical part of a tool list. It depends only on the tools in the order they are
    laid out (sorted by name unless pinned), so a caller's reshuffled list shares it."""

    canonical: list[bytes]  # each tool's canonical JSON, in layout order (relocated)
    blocks: list[Block]
    digests: list[str]
    canonical_by_name: dict[str, str]
    fragments: list[Fragment]
    data_classes: list[tuple[str, ...]]
    chars: int
    _values: list[Any] | None = None

    def values(self) -> list[Any]:
        """The canonical tools as JSON values, parsed on first use: they are only
        sent once a family has seen its tools change (see ``_Family.tools_unstable``)."""
        if self._values is None:
            self._values = [orjson.loads(c) for c in self.canonical]
        return self._values


@dataclass(slots=True)
class _Tools:
    """A tool list as the caller sent it (memoized by its raw bytes), with its canonical part."""

    shared: _ToolSet
    raw_order: list[str]
    raw_crc: dict[str, int]
    raw: bytes  # the list as the caller sent it (orjson, key order kept)


@dataclass(slots=True)
class _Message:
    """A conversation message with its block and digest (memoized)."""

    message: Any
    block: Block
    digest: str
    data_classes: tuple[str, ...]
    chars: int
    normalized: bool  # ``message`` is our normalized copy, not the caller's object
    # Its canonical JSON, kept only while it is a current turn: as history next call its
    # digest is taken again under its history kind, without analysing it again.
    canonical: bytes | None = None


@dataclass(slots=True)
class _Family:
    """Per prefix-family state: learned volatility and the last request's fingerprints."""

    slots: dict[str, SlotVolatility] = field(default_factory=dict)
    last: Snapshot | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Tools go out as the caller sent them until the family sees their bytes
    # change (order, key order); from then on, sorted and canonical for good.
    tools_raw: bytes | None = None
    tools_unstable: bool = False
    # Bumped whenever a request runs the family's learning; a reused prefix
    # result is only valid while the version it was computed at is current.
    version: int = 0


@dataclass(slots=True, frozen=True)
class _Prefix:
    """The system section and tools of a request as sent, with everything derived
    from them (reused while they and the family's learned state are unchanged)."""

    system: tuple[str, ...]
    family: _Family
    fid: str
    version: int
    tools: _Tools
    system_out: list[str]
    prints: list[SlotPrint]
    fragments: list[Fragment]
    volatile_text: str | None
    volatile_block: Block | None
    volatile_digest: str | None
    canonical_tools: bool
    sent_tools: list[Any]
    tools_record: Record | None  # of the caller's tools (see promptcache.fingerprint)
    blocks: list[Block]
    digests: list[str]
    classes: dict[int, list[str]]
    hash_state: _Hash  # SHA-256 after the prefix digests (never updated)
    prefix_key: str
    contract: KeyContract
    n_system: int
    chars: int


@dataclass(slots=True, frozen=True)
class _Learned:
    """What a family's learning decided for one request's system texts and tools."""

    system_out: list[str]
    fragments: list[Fragment]
    prints: list[SlotPrint]
    canonical_tools: bool
    version: int


@dataclass(slots=True, frozen=True)
class _History:
    """What a plan takes from its static prefix and history, ready to extend.

    Kept with the stream, so a call that resends last call's history unchanged
    builds its plan from these instead of walking every message again. Never
    mutated: plans get new lists.
    """

    blocks: list[Block]  # prefix blocks, then one per history message
    digests: list[str]
    classes: dict[int, list[str]]  # plan index -> data classes, prefix and history
    chars: list[int]  # characters of each history message
    chars_total: int  # their sum
    history_digests: list[str]
    normalized: bool  # some history message is sent as our normalized copy
    # What hint placement asks of every request, answered once for this part:
    policy: Policy  # (the policy the two answers below were computed under)
    blocked: int | None  # first block provider caching may not cover, if any
    class_set: frozenset[str]  # every data class present
    hash_state: _Hash  # SHA-256 after the prefix and history digests (never updated)


@dataclass(slots=True, frozen=True)
class _HintMemo:
    """Last call's hint outcome, when it only added top-level fields to the body.

    OpenAI's hints (``prompt_cache_key``, ``prompt_cache_retention``; Gemini has none) are
    decided by the model, the policy, the catalog, the prefix, which blocks hold content kept
    out of provider caches and which top-level fields the caller set: ``sig`` and the three
    objects. The next call of the stream with all of them unchanged gets the same fields.
    """

    # (first blocked block, number of blocks, data classes, body's other fields), or when
    # ``coarse`` (models caching automatically, no breakpoints to place) only whether the
    # first blocked block is in the prefix and whether there is one.
    sig: tuple[Any, ...]
    coarse: bool
    policy: Policy
    catalog: Catalog
    additions: dict[str, Any]
    hints: list[Hint]
    notes: list[str]


# Formats whose hints are top-level fields decided only by what _HintMemo checks (the
# explicit-breakpoint OpenAI models mark messages instead, and are never memoized).
_TOP_LEVEL_HINTS = frozenset({WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES, WireFormat.GEMINI})
_MISSING = object()


@dataclass(slots=True, frozen=True)
class _Stream:
    """The last request of one (format, model, tenant, system kinds) stream: the warm
    path compares the next request against it by value and re-analyses only the rest."""

    prefix: _Prefix
    records: list[Record]  # of the conversation messages (see promptcache.fingerprint)
    messages: list[_Message]
    cur: int
    conversation_key: str
    chars: int  # characters of conversation it keeps referenced (its share of the budget)
    history: _History
    hints: _HintMemo | None


# (format, model, tenant, system kinds, the conversation's first message by value): a server
# runs many conversations of one agent for one tenant at once, and each keeps its own stream.
_StreamKey = tuple[WireFormat, str, str, tuple[BlockKind, ...], Hashable]
# Conversations with the same first message (forks: parallel branches, retries, a history
# shared by several agents) share a key; it keeps this many of its most recent streams.
_FORKS = 4
_PrefixKey = tuple[WireFormat, str, str, tuple[BlockKind, ...]]


def _same_inputs(pre: _Prefix, system: tuple[str, ...], tools: list[Any]) -> bool:
    """Whether ``pre`` was built from these system texts and tools (checked by record); it is
    still their prefix while its family's version is the one it was built at."""
    return pre.system == system and pre.tools_record is not None and same_value(tools, pre.tools_record)


def _shared_messages(stream: _Stream, new: list[Any], cur: int) -> int:
    """How many leading messages of ``new`` (current turn from ``cur``) reuse ``stream``'s."""
    old = stream.records
    # Reuse needs the same history/current role as last time: everywhere when the current
    # turn starts at the same index, else only in both histories.
    limit = min(len(new), len(old))
    if stream.cur != cur:
        limit = min(limit, stream.cur, cur)
    # By value against our records: safe against a caller that mutates a message in place
    # between calls.
    return common_prefix(new if limit == len(new) else new[:limit], old)


def _scan_each(scanner: Scanner, texts: list[str]) -> list[list[Hit]]:
    """The hits of ``scanner`` in each of ``texts``, from one scan of them joined.

    One RE2 call instead of one per text. A hit spanning a separator is given,
    clipped, to every text it overlaps, so joining can only add findings to a
    text, never hide one.
    """
    if len(texts) == 1:  # the usual warm call: one new turn, nothing to join
        return [scanner.scan(texts[0])]
    out: list[list[Hit]] = [[] for _ in texts]
    if not texts:
        return out
    starts: list[int] = []
    pos = 0
    for t in texts:
        starts.append(pos)
        pos += len(t) + 1
    for h in scanner.scan("\n".join(texts)):
        k = bisect_right(starts, h.start) - 1
        while k < len(texts) and starts[k] < h.end:
            lo, hi = starts[k], starts[k] + len(texts[k])
            if h.start < hi or h.start == lo:
                out[k].append(Hit(max(h.start, lo) - lo, min(h.end, hi) - lo, h.kind))
            k += 1
    return out


def _not_json(fmt: WireFormat, exc: TypeError) -> WireFormatError:
    # A wire format error like any other malformed body: the caller's request is bad.
    return WireFormatError(f"{fmt.value}: a message is not JSON-serializable ({exc})")


def _canonical_message(fmt: WireFormat, msg: Any) -> tuple[Any, bytes]:
    """``msg`` with its text normalized, and its canonical JSON.

    When the sorted-key dump is already canonical, the message's text needs no
    normalizing either: one dump instead of a normalization walk plus a dump (this
    runs for every new message).
    """
    try:
        raw = orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise _not_json(fmt, exc) from None
    if json_text_is_canonical(raw):
        return msg, raw
    normalized = normalize_message_text(msg)
    return normalized, canonical_json(normalized, where="message")


class _Memo:
    """A memo bounded by entries and by the characters its values hold (FIFO eviction:
    cheap, and an entry still in use is analysed and added again on its next miss)."""

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self._d: dict[Hashable, tuple[Any, int]] = {}
        self._max = max_entries
        self._max_chars = max_chars
        self._chars = 0
        self._lock = threading.Lock()  # puts only: they run on the miss path

    def get(self, key: Hashable) -> Any:
        hit = self._d.get(key)
        return None if hit is None else hit[0]

    def put(self, key: Hashable, value: Any, chars: int = 0) -> None:
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self._chars -= old[1]
            while self._d and (len(self._d) >= self._max or self._chars + chars > self._max_chars):
                # Drop the oldest eighth at once so eviction cost is amortized.
                for k in list(self._d)[: max(len(self._d) // 8, 1)]:
                    self._chars -= self._d.pop(k)[1]
            self._d[key] = (value, chars)
            self._chars += chars


class PromptCache:
    """Lays requests out for caching, keys them per tenant and places provider hints.

    ``PromptCache()`` works with no arguments (embedded defaults). ``mode="shadow"``
    computes every figure but returns requests unchanged.

    Memory is bounded: ``memo_entries`` analysed blocks and messages holding at
    most ``memo_chars`` characters per memo; ``max_families`` prefix families; and
    the last request of each (format, model, tenant) stream, kept so that the next
    one is analysed only where it differs: up to ``max_families`` streams holding
    ``stream_chars`` characters of conversation in all (least recently used out).

    ``record_stats``: write this cache's usage figures (counts, tokens, cost per tenant
    and model; never prompt text) into its store for ``promptcache stats``, off the call
    path. On by default; ``False`` or ``PROMPTCACHE_RECORD_STATS=0`` turns it off.
    """

    def __init__(
        self,
        policy: Policy | Mapping[str, Any] | str | None = None,
        *,
        mode: Mode = "active",
        memo_entries: int = 8192,
        max_families: int = 4096,
        stream_chars: int = 16_000_000,
        memo_chars: int = 32_000_000,
        catalog: Catalog | None = None,
        store: str | TieredStore | Any | None = None,
        authorize: Authorizer | None = None,
        telemetry: bool = False,
        record_stats: bool | None = None,
    ) -> None:
        if policy is None:
            self.policy = Policy()
        elif isinstance(policy, Policy):
            self.policy = policy
        else:
            self.policy = Policy.load(policy)
        if mode not in ("active", "shadow"):
            raise ValueError(f"mode={mode!r}: use 'active' or 'shadow'")
        self.mode: Mode = mode
        self._memo = _Memo(memo_entries, memo_chars)
        # History messages analysed, per wire format (the current turn is not memoized).
        self._stats = StatsRecorder()  # this cache's running totals (stats.recorder_for)
        self._msg_memo: defaultdict[WireFormat, _Memo] = defaultdict(lambda: _Memo(memo_entries, memo_chars))
        self._families: dict[str, _Family] = {}
        self._max_families = max_families
        self._families_lock = threading.Lock()
        self._streams: dict[_StreamKey, list[_Stream]] = {}  # most recent first
        # The last prefix of each (format, model, tenant, system kinds), whatever its conversation.
        self._prefixes: dict[_PrefixKey, _Prefix] = {}
        self._streams_lock = threading.Lock()
        self._stream_chars = 0
        self._stream_char_budget = stream_chars
        self._contracts: dict[tuple[str, str], KeyContract] = {}
        #: Model facts (minimum cacheable lengths, TTL options, prices); ``None``
        #: uses the packaged, dated catalog.
        self.catalog = catalog
        self._store_spec = store
        self._store: TieredStore | None = store if isinstance(store, TieredStore) else None
        # A store the caller passed in is theirs to close; one we opened is ours.
        self._owns_store = not isinstance(store, TieredStore)
        self._authorize = authorize
        self._artifacts_lock = threading.Lock()
        self._tools_cache: ToolOutputCache | None = None
        self._retrieval_cache: RetrievalCache | None = None
        self._responses_cache: ResponseCache | None = None
        self._gemini_managers: list[GeminiCacheManager] = []
        if telemetry:
            # Spans, metrics and events (hashes and sizes only); nothing is exported
            # until an exporter or observer listens (see promptcache.telemetry).
            from promptcache.telemetry import instrument

            instrument(self)
        # Figures into the store for `promptcache stats` (off: record_stats=False or
        # PROMPTCACHE_RECORD_STATS=0); written off the call path, see promptcache.stats.
        self._stats_sink = persist_stats(self, record_stats)

    # -- promptcache's own caches ---------------------------------------------

    @property
    def store(self) -> TieredStore:
        """The tiered store behind the tool, retrieval and response caches.

        Opened on first use (``PromptCache()`` touches no disk until then): the
        embedded SQLite default, or what ``store=`` named (``redis://...``,
        ``rediss://``, cluster, sentinel, a Redis client or a ``TieredStore``).
        """
        if self._store is None:
            with self._artifacts_lock:
                if self._store is None:
                    self._store = open_store(self._store_spec)
        return self._store

    @property
    def tools(self) -> ToolOutputCache:
        """The tool-output cache (side-effect classes honoured; see :mod:`promptcache.artifacts`)."""
        if self._tools_cache is None:
            self._tools_cache = ToolOutputCache(self.store, self.policy)
        return self._tools_cache

    @property
    def retrieval(self) -> RetrievalCache:
        """The retrieval cache; ``authorize=`` re-checks documents on every hit."""
        if self._retrieval_cache is None:
            self._retrieval_cache = RetrievalCache(self.store, self.policy, authorize=self._authorize)
        return self._retrieval_cache

    @property
    def responses(self) -> ResponseCache:
        """The response cache (only what the policy allows: low temperature, structured output)."""
        if self._responses_cache is None:
            self._responses_cache = ResponseCache(self.store, self.policy)
        return self._responses_cache

    def gemini_caches(self, transport: GeminiTransport, **kwargs: Any) -> GeminiCacheManager:
        """A manager of Gemini explicit cached contents bound to this cache.

        It creates a cached content when a request's static prefix clears the
        model's minimum, reuses and refreshes it, and deletes it when
        :meth:`invalidate` is called with one of its tags. ``transport`` makes
        the HTTP calls (``HttpxGeminiTransport`` or your own).
        """
        from promptcache.providers.gemini_cache import GeminiCacheManager

        manager = GeminiCacheManager(transport, catalog=self.catalog, **kwargs)
        self._gemini_managers.append(manager)
        return manager

    def invalidate(self, tag: str) -> int:
        """Make every entry tagged ``tag`` unreadable in every process; returns the new generation.

        Gemini cached contents created under ``tag`` are deleted too. Raises
        ``InvalidationFailed`` when the shared tier cannot record it (then
        entries could survive, so the caller must know).
        """
        for manager in self._gemini_managers:
            manager.invalidate(tag=tag)
        return self.store.invalidate(tag)

    async def ainvalidate(self, tag: str) -> int:
        """The asyncio twin of :meth:`invalidate`."""
        return await self.store.ainvalidate(tag)

    def close(self) -> None:
        """Write the figures, flush and close the store this cache opened (a store passed in is left open)."""
        if self._stats_sink is not None:
            self._stats_sink.close()
        if self._store is not None and self._owns_store:
            self._store.close()

    # -- figures ---------------------------------------------------------------

    def record_usage(self, usage: CacheUsage, *, tenant: str | None = None) -> None:
        """Add one call's provider usage to this cache's running figures.

        The framework integrations call this for every model call they observe;
        call it yourself when you send ``prepare_request`` bodies directly.
        """
        recorder_for(self).record(self.resolve_tenant(tenant), usage)

    def stats(self) -> CacheStats:
        """Aggregate figures of every call recorded so far, per tenant and model.

        >>> from promptcache.usage import CacheUsage
        >>> cache = PromptCache()
        >>> cache.record_usage(CacheUsage(provider="openai", model="gpt-4o", input_tokens=1420,
        ...                               cache_read_tokens=1280, output_tokens=100), tenant="acme")
        >>> cache.stats().get("acme", "gpt-4o").cache_read_tokens
        1280
        """
        return recorder_for(self).snapshot()

    def prewarm(
        self,
        body: Mapping[str, Any],
        *,
        format: str | WireFormat,
        send: Callable[[dict[str, Any]], Mapping[str, Any]],
        tenant: str | None = None,
        zero_max_tokens: bool = True,
    ) -> PrewarmReport:
        """Seed the provider's cache for ``body``'s stable prefix with one minimal request.

        ``send`` takes a request body and returns the provider's JSON response
        (for an SDK: ``lambda b: client.messages.create(**b).to_dict()``). The
        report says which hints were sent, what the provider cached and what it cost.
        """
        from promptcache.providers.prewarm import prewarm

        return prewarm(self, body, format=format, send=send, tenant=tenant, zero_max_tokens=zero_max_tokens)

    async def aprewarm(
        self,
        body: Mapping[str, Any],
        *,
        format: str | WireFormat,
        send: Callable[[dict[str, Any]], Awaitable[Mapping[str, Any]]],
        tenant: str | None = None,
        zero_max_tokens: bool = True,
    ) -> PrewarmReport:
        """The asyncio twin of :meth:`prewarm`."""
        from promptcache.providers.prewarm import aprewarm

        return await aprewarm(
            self, body, format=format, send=send, tenant=tenant, zero_max_tokens=zero_max_tokens
        )

    # -- tenants and keys -------------------------------------------------

    def resolve_tenant(self, tenant: str | None) -> str:
        """The tenant a call runs under; refuses a missing tenant when the policy requires one."""
        if tenant:
            return tenant
        if self.policy.require_tenant:
            raise ValueError(
                "tenant: this policy requires a tenant on every call (require_tenant: true); "
                "pass tenant=... (LangChain: config={'configurable': {'tenant_id': ...}})"
            )
        return self.policy.default_tenant

    def contract(self, tenant: str, model: str) -> KeyContract:
        """The key contract for prompt entries of ``tenant`` on ``model``."""
        k = (tenant, model)
        c = self._contracts.get(k)
        if c is None:
            c = KeyContract(tenant=tenant, model=model, policy_version=self.policy.version)
            self._contracts[k] = c
        return c

    def _family(self, fid: str) -> _Family:
        fam = self._families.get(fid)
        if fam is None:
            with self._families_lock:
                fam = self._families.get(fid)
                if fam is None:
                    if len(self._families) >= self._max_families:
                        self._families.pop(next(iter(self._families)))
                    fam = self._families[fid] = _Family()
        return fam

    # -- analysis (memoized by content) --------------------------------------

    def _relocates(self, kind: BlockKind) -> bool:
        r = self.policy.relocation
        return r.enabled and kind not in r.disabled_kinds

    def _text(self, text: str, kind: BlockKind, label: str) -> _Text:
        key = ("t", kind, label, text)
        hit: _Text | None = self._memo.get(key)
        if hit is not None:
            return hit
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            # Not valid Unicode: no provider client can send it. Say where, instead
            # of failing later inside a hash or the SDK's JSON encoder.
            raise WireFormatError(
                f"{label}: the text holds an unpaired surrogate at character {exc.start}; "
                "decode the source with errors='replace' or fix the string"
            ) from None
        canon = canonical_text(text)
        hits = _STATIC_SCANNER.scan(canon)
        classes = classes_of(hits)
        spans = find_volatile(canon, hits) if self._relocates(kind) else []
        stable, frags = relocate_spans(canon, spans, label)
        lines = stable.split("\n")
        # Whole-line moves shift every later line up; explanations must speak in
        # the caller's numbering, so map each stable line back to its source line.
        moved = {f.line for f in frags if f.marker is None}
        numbers = [n for n in range(1, len(lines) + len(moved) + 1) if n not in moved][: len(lines)]
        dg = digest(kind.encode(), stable.encode())
        block = trusted_block(
            kind, stable, trust=Trust.TRUSTED, stability=Stability.STATIC, data_classes=classes
        )
        res = _Text(
            stable,
            frags,
            lines,
            [zlib.crc32(x.encode()) for x in lines],
            numbers,
            classes,
            zlib.crc32(text.encode("utf-8", "surrogatepass")),
            dg,
            block,
            canon,
            spans,
        )
        self._memo.put(key, res, 3 * len(text))  # the text, its canonical form and its lines
        return res

    def _tools(self, fmt: WireFormat, tools: list[Any], raw: bytes) -> _Tools:
        adapter = get_adapter(fmt)
        pin = self.policy.layout.pin_tool_order
        key = ("tools", fmt, pin, raw)
        hit: _Tools | None = self._memo.get(key)
        if hit is not None:
            return hit
        names = [adapter.tool_name(t) for t in tools]
        raws = [orjson.dumps(t) for t in tools]  # each as sent, key order kept
        order = list(range(len(tools)))
        if not pin:
            order.sort(key=lambda i: names[i])
        raw_crc = {names[i]: zlib.crc32(raws[i]) for i in range(len(tools))}
        # A caller reshuffling the same tools on every call (a cache killer promptcache is
        # there to absorb) gets the canonical part it already has, keyed by the tools in
        # layout order. Only a new tool set is also memoized by its raw bytes: one entry per
        # order seen would fill the memo with copies of the same tools.
        set_key = ("toolset", fmt, pin, tuple(raws[i] for i in order))
        shared: _ToolSet | None = self._memo.get(set_key)
        if shared is not None:
            return _Tools(shared, names, raw_crc, raw)
        shared = self._tool_set(tools, names, order)
        res = _Tools(shared, names, raw_crc, raw)
        self._memo.put(set_key, shared, len(raw) + shared.chars)
        self._memo.put(key, res, len(raw))
        return res

    def _tool_set(self, tools: list[Any], names: list[str], order: list[int]) -> _ToolSet:
        """Canonicalize, scan and key ``tools`` laid out in ``order``."""
        out_tools: list[bytes] = []
        blocks: list[Block] = []
        digests: list[str] = []
        frags: list[Fragment] = []
        classes_list: list[tuple[str, ...]] = []
        canon_by_name: dict[str, str] = {}
        relocate = self._relocates(BlockKind.TOOL_SCHEMA)
        chars = 0
        canon = [canonical_json(tools[i], where=f"tools[{i}]") for i in order]
        hits_by_tool = _scan_each(_STATIC_SCANNER, [c.decode() for c in canon])
        for n, i in enumerate(order):
            cj = canon[n]
            hits = hits_by_tool[n]
            chars += len(cj)
            classes = classes_of(hits)
            if relocate and hits and find_volatile(cj.decode(), hits):
                value, fs = relocate_json(orjson.loads(cj), f"tool {names[i]!r}", marker_start=len(frags) + 1)
                frags.extend(fs)
                cj = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            dg = digest(b"tool_schema", cj)
            out_tools.append(cj)
            digests.append(dg)
            canon_by_name[names[i]] = dg
            classes_list.append(classes)
            blocks.append(
                trusted_block(
                    BlockKind.TOOL_SCHEMA,
                    # The canonical JSON text: exact and immutable, and parsing
                    # every schema back into dicts cost more than the rest of a cold call.
                    cj.decode(),
                    trust=Trust.TRUSTED,
                    stability=Stability.STATIC,
                    name=names[i],
                    data_classes=classes,
                )
            )
        return _ToolSet(out_tools, blocks, digests, canon_by_name, frags, classes_list, chars)

    def _message_key(self, fmt: WireFormat, msg: Any) -> Hashable:
        # Plain-string messages are keyed by their (immutable, hash-cached)
        # strings; anything nested is keyed by its JSON bytes. Both are value keys,
        # so a message mutated in place between calls can never hit a stale entry.
        if type(msg) is dict and str_values_only(msg):
            return tuple(msg.items())
        try:
            return orjson.dumps(msg)
        except TypeError as exc:
            raise _not_json(fmt, exc) from None

    def _messages(
        self, fmt: WireFormat, adapter: WireAdapter, msgs: list[Any], first: int, cur: int
    ) -> list[_Message]:
        """Analyse ``msgs`` (conversation indices from ``first``): memo hits as they
        are, the rest canonicalized and scanned for secrets and PII in one pass."""
        out: list[_Message | None] = []
        todo: list[tuple[int, Any, bool, Hashable]] = []
        history = self._msg_memo[fmt]
        for n, msg in enumerate(msgs):
            if first + n >= cur:
                # The current turn is not memoized: a turn is new when it is current, and on
                # the next call it is history, reused from the stream or analysed as history.
                todo.append((n, msg, True, None))
                out.append(None)
                continue
            mkey = self._message_key(fmt, msg)
            hit: _Message | None = history.get(mkey)
            if hit is None:
                todo.append((n, msg, False, mkey))
            out.append(hit)
        if todo:
            normalized: list[Any] = []
            canon: list[bytes] = []
            for _, msg, _, _ in todo:
                m, cj = _canonical_message(fmt, msg)
                normalized.append(m)
                canon.append(cj)
            texts: list[str] = []
            for c in canon:
                texts.append(c.decode())
            found = _scan_each(SENSITIVE_SCANNER, texts)
            for (n, original, current, mkey), msg, cj, s, hits in zip(
                todo, normalized, canon, texts, found, strict=True
            ):
                classes = classes_of(hits)
                kind = adapter.message_kind(msg)
                if current and kind is BlockKind.HISTORY:
                    kind = BlockKind.USER
                role = msg.get("role") if type(msg) is dict else None
                block = trusted_block(
                    kind,
                    msg,
                    role=role if role is None or type(role) is str else str(role),
                    stability=Stability.VOLATILE if current else Stability.SESSION,
                    data_classes=classes,
                    trust=Trust.UNTRUSTED if kind is BlockKind.TOOL_RESULT else Trust.TRUSTED,
                )
                dg, kept = digest(kind.encode(), cj), cj if current else None
                res = _Message(msg, block, dg, classes, len(s), msg is not original, kept)
                if not current:
                    history.put(mkey, res, res.chars)
                out[n] = res
        return out  # type: ignore[return-value]  # every None was filled in above

    # -- the facade -----------------------------------------------------------

    def plan(self, blocks: Sequence[Block], *, model: str, tenant: str | None = None) -> Plan:
        """Lay ``blocks`` out static-first, canonicalize them and key them for ``tenant``.

        Volatile values in static blocks are relocated into a labelled volatile
        block placed after the history and before the current user turn.
        """
        tenant = self.resolve_tenant(tenant)
        arranged, moves = arrange(blocks, pin_tool_order=self.policy.layout.pin_tool_order)
        out: list[Block] = []
        digests: list[str] = []
        sections: list[str] = []
        frags: list[Fragment] = []
        classes: dict[int, list[str]] = {}
        for b, section in arranged:
            if section == "current" and frags and "volatile" not in sections:
                self._append_volatile(frags, out, digests, sections)
            content: Any = b.content
            found: tuple[str, ...] = b.data_classes
            # Untrusted static content (a fixed document) is data: its values are
            # never relocated into the volatile block, which is trusted.
            if b.stability is Stability.STATIC and b.trust is Trust.TRUSTED and isinstance(content, str):
                t = self._text(content, b.kind, b.label)
                frags.extend(t.fragments)
                content, found = t.stable, tuple(sorted(set(found) | set(t.data_classes)))
                dg = t.digest
            else:
                if isinstance(content, str):
                    content = canonical_text(content)
                    s = content
                    cj = content.encode()
                else:
                    cj = canonical_json(content, where=f"{b.label}.content")
                    s = cj.decode()
                found = tuple(sorted(set(found) | {f.data_class for f in scan_sensitive(s)}))
                dg = digest(b.kind.encode(), cj)
            if found:
                classes[len(out)] = list(found)
            out.append(b.model_copy(update={"content": content, "data_classes": found}))
            digests.append(dg)
            sections.append(section)
        if frags and "volatile" not in sections:
            self._append_volatile(frags, out, digests, sections)
        prefix_end = sum(1 for s in sections if s == "static")
        contract = self.contract(tenant, model)
        tool_names = [b.name or "" for b in out if b.kind is BlockKind.TOOL_SCHEMA]
        hist_end = sum(1 for s in sections if s in ("static", "session", "untrusted", "history"))
        plan = Plan(
            model=model,
            tenant=tenant,
            family=self._family_id("blocks", model, tenant, tool_names, 0),
            blocks=out,
            digests=digests,
            sections=sections,
            prefix_end=prefix_end,
            prefix_key=derive_key(contract, "prompt_prefix", chain_hash(digests[:prefix_end])),
            conversation_key=derive_key(contract, "conversation", chain_hash(digests[:hist_end])),
            fragments=frags,
            moves=moves,
            data_classes=classes,
            mode=self.mode,
        )
        plan._contract = contract
        return plan

    @staticmethod
    def _family_id(fmt: str, model: str, tenant: str, tool_names: list[str], n_system: int) -> str:
        # The family is what should share a prefix: same tenant, model and toolset.
        # Content is left out on purpose, so an edited prompt stays in its family
        # and the edit can be explained.
        h = hashlib.sha256(orjson.dumps([fmt, model, tenant, sorted(tool_names), n_system]))
        return h.hexdigest()[:16]

    def _append_volatile(
        self, frags: list[Fragment], out: list[Block], digests: list[str], sections: list[str]
    ) -> None:
        text = self._volatile_text(frags)
        out.append(
            Block(kind=BlockKind.CONTEXT, content=text, stability=Stability.VOLATILE, name="relocated")
        )
        digests.append(digest(b"volatile", text.encode()))
        sections.append("volatile")

    @staticmethod
    def _volatile_text(frags: list[Fragment]) -> str:
        lines = []
        for f in frags:
            where = f"[{f.source}, line {f.line}]" if f.path is None else f"[{f.source} {f.path}]"
            lines.append(f"{where} {f.marker} = {f.text}" if f.marker else f"{where} {f.text}")
        return VOLATILE_HEADER + "\n".join(lines) + "\n" + VOLATILE_FOOTER

    def prepare_request(
        self,
        body: Mapping[str, Any],
        *,
        format: str | WireFormat,
        model: str | None = None,
        tenant: str | None = None,
    ) -> Prepared:
        """Rewrite a provider request ``body`` for caching, in the same wire format.

        System/developer text is canonicalized and its volatile values relocated
        after the stable prefix; tools are put in canonical JSON and sorted by
        name; the history keeps its order; provider caching hints are placed.
        """
        fmt = parse_format(format)
        if type(body) is not dict:
            if not isinstance(body, Mapping):
                raise WireFormatError(f"{fmt.value}: the request body must be a JSON object")
            body = dict(body)  # adapters read a dict; nothing below writes to the caller's
        model = model or body.get("model") or body.get("modelId")
        if not isinstance(model, str) or not model:
            raise WireFormatError(f"{fmt.value}: no model in the body; pass model=...")
        tenant = self.resolve_tenant(tenant)
        adapter = get_adapter(fmt)
        parts = adapter.split(body)
        if not telemetry_tracing():  # no span, not even its attributes, when nobody traces
            return self._prepare_parts(fmt, adapter, parts, body, model, tenant)
        with telemetry_span("promptcache.canonicalize", {"promptcache.format": fmt.value}):
            return self._prepare_parts(fmt, adapter, parts, body, model, tenant)

    def _prepare_parts(
        self,
        fmt: WireFormat,
        adapter: WireAdapter,
        parts: WireParts,
        body: dict[str, Any],
        model: str,
        tenant: str,
    ) -> Prepared:
        conv = parts.messages
        if conv:
            first = conv[0]
            content = first.get("content") if type(first) is dict else None
            # Conversations are told apart by their first message, by value: its text as it is
            # (hashed once per string object), else its JSON. The same text in another role
            # shares the key; the fork lookup tells such conversations apart.
            anchor = content if type(content) is str else self._message_key(fmt, first)
        else:
            anchor = None
        skey: _StreamKey = (fmt, model, tenant, tuple(parts.system_kinds), anchor)
        forks = self._streams.get(skey)
        shared: int | None = None
        if forks is None:
            stream = None
        elif len(forks) == 1:
            stream = forks[0]
        else:
            stream, shared = self._closest(forks, conv, parts.current)
        pre = self._static_prefix(fmt, parts, model, tenant, skey, stream)
        same = stream if stream is not None and stream.prefix is pre else None
        # Messages are analysed on their own, whatever precedes them: last call's results are
        # reused even when the prefix was rebuilt (a reshuffled tool list, a new clock value).
        msgs, records, k = self._conversation(fmt, adapter, parts, stream, shared)
        cur = parts.current
        old = same.history if same is not None and same.history.policy is self.policy else None
        if old is not None and same is not None and same.cur == cur and k >= cur:
            # The history is last call's, message for message: so are its key and plan part.
            hist, conv_key = old, same.conversation_key
        elif old is not None and same is not None and same.cur < cur and k >= same.cur:
            # Last call's history, then more (its answer, tool results): extend its part.
            hist, conv_key = self._extend_history(old, msgs[same.cur : cur]), None
        else:
            hist, conv_key = self._history(pre, msgs[:cur]), None
        tail = msgs[cur:]
        # One pass over the current turn (usually one message) extends last call's lists
        # and answers; plain loops, as each comprehension is a function call of its own.
        # The history's character counts are read only when hints are placed again: no copy
        # of them per call (each copy touches every count object, cold on an agent's next call).
        blocks, digests, tail_chars = hist.blocks.copy(), hist.digests.copy(), []
        normalized, blocked, classes_present = hist.normalized, hist.blocked, hist.class_set
        classes = hist.classes.copy()
        at = len(pre.blocks) + cur + (pre.volatile_text is not None)  # the volatile block sits before
        for i, m in enumerate(tail):
            blocks.append(m.block)
            digests.append(m.digest)
            tail_chars.append(m.chars)
            normalized = normalized or m.normalized
            if m.data_classes:
                classes[at + i] = list(m.data_classes)
                classes_present = classes_present.union(m.data_classes)
                if blocked is None and not self.policy.provider_caching_allowed(m.data_classes):
                    blocked = at + i
        # A message equal to one seen before is sent as the caller's own object;
        # only a message whose text was normalized is sent as our copy.
        if normalized:
            sent = [m.message if m.normalized else parts.messages[i] for i, m in enumerate(msgs)]
        else:
            sent = parts.messages
        # Tools the caller sent byte for byte as last time go out as the caller's own objects
        # (the SDK serializes what it was just handed, not the first call's copies).
        tools = pre.sent_tools if pre.canonical_tools else parts.tools
        new_body = adapter.join(parts, pre.system_out, tools, sent, pre.volatile_text)

        plan = self._plan_for_request(fmt, model, tenant, pre, cur, hist, blocks, digests, classes, conv_key)
        fam = pre.family
        with fam.lock:
            previous = fam.last
            if (
                previous is not None
                and previous.system is pre.prints
                and previous.history is hist.history_digests
                and previous.tool_raw is pre.tools.raw_crc
                and previous.tool_order is pre.tools.raw_order
                and previous.tool_canonical is pre.tools.shared.canonical_by_name
                and previous.tools_canonical == pre.canonical_tools
            ):
                # Made of the very objects this request would put in a new one: the same
                # snapshot (snapshots are never changed once made).
                snapshot = previous
            else:
                snapshot = Snapshot(
                    system=pre.prints,
                    tool_order=pre.tools.raw_order,
                    tool_raw=pre.tools.raw_crc,
                    tool_canonical=pre.tools.shared.canonical_by_name,
                    history=hist.history_digests,
                    tools_canonical=pre.canonical_tools,
                )
                fam.last = snapshot

        n_blocks = len(blocks)
        blocked_from = n_blocks if blocked is None else blocked
        rest = tuple(parts.rest)
        sig = (blocked_from, n_blocks, classes_present, rest)
        # Automatic-caching models only ask whether blocked content starts in the prefix or in
        # the conversation: that sig holds while an agent's history grows. (Both answers also
        # follow from the classes present, under a memo's own prefix; they are kept explicit.)
        coarse = (blocked_from < len(pre.blocks), blocked_from < n_blocks, classes_present, rest)
        catalog = self.catalog if self.catalog is not None else default_catalog()
        memo = same.hints if same is not None else None
        if (
            memo is not None
            and memo.sig == (coarse if memo.coarse else sig)
            and memo.policy is self.policy
            and memo.catalog is catalog
        ):
            hinted = {**new_body, **memo.additions} if memo.additions else new_body
            hints, notes = list(memo.hints), list(memo.notes)
        else:
            ctx = HintContext(
                format=fmt,
                model=model,
                policy=self.policy,
                plan=plan,
                n_system=pre.n_system,
                n_tools=len(pre.tools.shared.canonical),
                history_end=cur,
                has_volatile=pre.volatile_text is not None,
                prefix_chars=pre.chars,
                message_chars=hist.chars + tail_chars,
                catalog=self.catalog,
                blocked_from=blocked_from,
                data_class_set=classes_present,
            )
            hinted, hints, notes = apply_hints(new_body, ctx)
            memo = self._hint_memo(fmt, model, new_body, hinted, hints, notes, (sig, coarse), catalog)
        if records is not None:
            # It continues the stream it started from (that stream's history is all in it, or
            # it rewinds it): replace that one; else it is a fork and both are kept.
            continued = stream if stream is not None and (k >= stream.cur or k >= cur) else None
            chars = hist.chars_total + sum(tail_chars)
            new = _Stream(pre, records, msgs, cur, plan.conversation_key, chars, hist, memo)
            self._remember(skey, new, continued)
        plan = plan.model_copy(update={"hints": hints, "decisions": notes})
        plan._contract, plan._snapshot, plan._previous = pre.contract, snapshot, previous
        return Prepared(body=dict(body) if self.mode == "shadow" else hinted, plan=plan)

    def _hint_memo(
        self,
        fmt: WireFormat,
        model: str,
        body: dict[str, Any],
        hinted: dict[str, Any],
        hints: list[Hint],
        notes: list[str],
        sigs: tuple[tuple[Any, ...], tuple[Any, ...]],
        catalog: Catalog,
    ) -> _HintMemo | None:
        """What the stream's next call may reuse of these hints (None: they must be placed again).

        ``sigs`` is (exact, coarse): the coarse one is enough for every model without OpenAI's
        explicit breakpoints (whose placement depends on the messages themselves).
        """
        if fmt not in _TOP_LEVEL_HINTS:
            return None
        for k, v in body.items():
            if hinted.get(k, _MISSING) is not v:  # something inside the body was marked
                return None
        additions = {k: v for k, v in hinted.items() if k not in body}
        coarse = fmt is WireFormat.GEMINI or "explicit" not in ttl_options(model, fmt, catalog)
        sig = sigs[1] if coarse else sigs[0]
        return _HintMemo(sig, coarse, self.policy, catalog, additions, list(hints), list(notes))

    @staticmethod
    def _closest(forks: list[_Stream], messages: list[Any], cur: int) -> tuple[_Stream, int]:
        """The stream sharing the most reusable leading messages with ``messages``, and how many.

        The first one the request continues (its whole history is shared) is taken at once.
        The most recent is tried first (a conversation's next call continues it, whatever
        stale forks an earlier rewind left), then the others in the order most likely to be
        continued: the current turn where the request's is, then the longest history not
        longer than the request's. So interleaved forks usually cost one comparison, not one
        per fork; failing that, the most shared messages win (a tie: the current turn where
        the request's is, then the first tried).
        """
        first = forks[0]
        k = _shared_messages(first, messages, cur)
        if k >= first.cur and first.cur <= cur:
            return first, k
        best, score = first, (k, first.cur == cur)
        for s in sorted(forks[1:], key=lambda s: (s.cur != cur, s.cur > cur, -s.cur)):
            k = _shared_messages(s, messages, cur)
            if k >= s.cur and s.cur <= cur:
                return s, k
            if (k, s.cur == cur) > score:
                best, score = s, (k, s.cur == cur)
        return best, score[0]

    def _remember_prefix(self, pkey: _PrefixKey, pre: _Prefix) -> None:
        with self._streams_lock:
            self._prefixes.pop(pkey, None)
            self._prefixes[pkey] = pre
            while len(self._prefixes) > self._max_families:
                self._prefixes.pop(next(iter(self._prefixes)))

    def _remember(self, skey: _StreamKey, stream: _Stream, replaces: _Stream | None) -> None:
        # Streams hold records of whole conversations: bounded by count and by the
        # characters they reference, least recently used first out.
        with self._streams_lock:
            streams = self._streams
            kept = [stream]
            self._stream_chars += stream.chars
            for s in streams.pop(skey, ()):
                if s is replaces or len(kept) == _FORKS:
                    self._stream_chars -= s.chars
                else:
                    kept.append(s)
            streams[skey] = kept
            while len(streams) > 1 and (
                len(streams) > self._max_families or self._stream_chars > self._stream_char_budget
            ):
                for evicted in streams.pop(next(iter(streams))):
                    self._stream_chars -= evicted.chars

    def _static_prefix(
        self,
        fmt: WireFormat,
        parts: WireParts,
        model: str,
        tenant: str,
        skey: _StreamKey,
        stream: _Stream | None,
    ) -> _Prefix:
        """The system section and tools as sent, with their blocks and hash state.

        Reused from the stream's last request, else from the last prefix of any conversation
        of this format, model and tenant (a new conversation starts from its agent's prefix
        rather than rebuilding it, which would also bump the family's version and make every
        other conversation rebuild it on its next call), when the caller's system texts and
        tool bytes equal that request's and the family has not been touched since (its
        volatility maps are then in the state that produced the reused result).
        """
        system = tuple(parts.system)
        own = stream.prefix if stream is not None else None
        # The stream's own prefix, when built from these very texts and tools.
        mine = own if own is not None and _same_inputs(own, system, parts.tools) else None
        if mine is not None and mine.family.version == mine.version:
            return mine
        pkey: _PrefixKey = skey[:4]
        latest = self._prefixes.get(pkey)
        if (
            latest is not None
            and latest is not own
            and latest.family.version == latest.version
            and _same_inputs(latest, system, parts.tools)
        ):
            return latest
        if mine is not None:
            relearned = self._relearned(mine, parts, model, tenant)
            if relearned is not None:
                if relearned is not latest:
                    self._remember_prefix(pkey, relearned)
                return relearned
        try:
            raw_tools = orjson.dumps(parts.tools)
        except TypeError as exc:
            raise WireFormatError(f"{fmt.value}: tools are not JSON-serializable ({exc})") from None
        for pre in (own, latest):
            if (
                pre is not None
                and pre.tools.raw == raw_tools
                and pre.system == system
                and pre.family.version == pre.version
            ):
                return pre  # equal bytes, where the record could not vouch (a type it does not take)
        pre = self._build_prefix(fmt, parts, model, tenant, system, raw_tools)
        self._remember_prefix(pkey, pre)
        return pre

    def _build_prefix(
        self,
        fmt: WireFormat,
        parts: WireParts,
        model: str,
        tenant: str,
        system: tuple[str, ...],
        raw_tools: bytes,
    ) -> _Prefix:
        """:meth:`_static_prefix` for a system section and tools no reusable prefix matches."""
        tools = self._tools(fmt, parts.tools, raw_tools)
        fid = self._family_id(fmt.value, model, tenant, tools.raw_order, len(parts.system))
        fam = self._family(fid)
        texts = self._system_texts(parts)
        learned = self._learn(fam, texts, parts.system_kinds, tools)
        return self._assemble(parts, model, tenant, system, tools, fid, fam, texts, learned)

    def _system_texts(self, parts: WireParts) -> list[_Text]:
        return [
            self._text(t, k, k.value if i == 0 else f"{k.value}[{i}]")
            for i, (t, k) in enumerate(zip(parts.system, parts.system_kinds, strict=True))
        ]

    def _learn(self, fam: _Family, texts: list[_Text], kinds: list[BlockKind], tools: _Tools) -> _Learned:
        """The family's learning from one request's system texts and tools, as every prefix
        built runs it: what to send of each text, what moved, and the family's new version."""
        frags: list[Fragment] = []
        system_out: list[str] = []
        prints: list[SlotPrint] = []
        with fam.lock:
            for i, t in enumerate(texts):
                stable, fs = self._learned(fam, i, t, kinds[i])
                system_out.append(stable)
                frags.extend(fs)
                prints.append(
                    SlotPrint(
                        t.block.label if i == 0 else f"{t.block.label}[{i}]",
                        t.raw_crc,
                        self._sent_digest(t, stable),
                        t.line_crcs,
                        t.line_numbers,
                        [(f.kind, f.line) for f in fs],
                    )
                )
            if fam.tools_raw is not None and fam.tools_raw != tools.raw:
                fam.tools_unstable = True
            fam.tools_raw = tools.raw
            canonical_tools = fam.tools_unstable
            fam.version += 1
            version = fam.version
        if canonical_tools:
            frags.extend(tools.shared.fragments)
        return _Learned(system_out, frags, prints, canonical_tools, version)

    def _relearned(self, own: _Prefix, parts: WireParts, model: str, tenant: str) -> _Prefix | None:
        """``own`` (same system texts, same tools) after the family learned from other requests
        since it was built: this request's learning, run as a build runs it, and ``own`` again
        when it decides the same (None: the family is not ``own``'s any more, build it anew).

        A server's conversations whose system prompts differ (a per-user line) share a family:
        each call of each one used to rebuild its prefix, as the others' calls had moved the
        family's version on.
        """
        fam = self._families.get(own.fid)
        if fam is not own.family:
            return None
        texts = self._system_texts(parts)
        learned = self._learn(fam, texts, parts.system_kinds, own.tools)
        if (
            learned.system_out == own.system_out
            and learned.fragments == own.fragments
            and learned.prints == own.prints
            and learned.canonical_tools == own.canonical_tools
        ):
            # Valid for the family as it is now, so it is made current in place: the same object
            # keeps the stream's history part and hints reusable (frozen otherwise; only its
            # version moves, and only forward, under nothing a reader could see half-done).
            object.__setattr__(own, "version", learned.version)
            return own
        return self._assemble(parts, model, tenant, own.system, own.tools, own.fid, fam, texts, learned)

    def _assemble(
        self,
        parts: WireParts,
        model: str,
        tenant: str,
        system: tuple[str, ...],
        tools: _Tools,
        fid: str,
        fam: _Family,
        texts: list[_Text],
        learned: _Learned,
    ) -> _Prefix:
        """The prefix of ``texts`` and ``tools`` as the family's learning decided them."""
        system_out, frags, canonical_tools = learned.system_out, learned.fragments, learned.canonical_tools
        blocks: list[Block] = []
        digests: list[str] = []
        classes: dict[int, list[str]] = {}
        for t, stable in zip(texts, system_out, strict=True):
            if not stable:
                continue
            blocks.append(
                t.block
                if stable is t.stable
                else Block(kind=t.block.kind, content=stable, data_classes=t.data_classes)
            )
            digests.append(self._sent_digest(t, stable))
            if t.data_classes:
                classes[len(blocks) - 1] = list(t.data_classes)
        base = len(blocks)
        classes.update({base + i: list(c) for i, c in enumerate(tools.shared.data_classes) if c})
        blocks += tools.shared.blocks
        digests += tools.shared.digests
        # chain_hashes' bytes, kept as a hash state so each call only extends it.
        h = hashlib.sha256("\x00".join(digests).encode())
        contract = self.contract(tenant, model)
        vt = self._volatile_text(frags) if frags else None
        return _Prefix(
            system=system,
            family=fam,
            fid=fid,
            version=learned.version,
            tools=tools,
            system_out=system_out,
            prints=learned.prints,
            fragments=frags,
            volatile_text=vt,
            volatile_block=(
                None
                if vt is None
                else Block(kind=BlockKind.CONTEXT, content=vt, stability=Stability.VOLATILE, name="relocated")
            ),
            volatile_digest=None if vt is None else digest(b"volatile", vt.encode()),
            canonical_tools=canonical_tools,
            sent_tools=tools.shared.values() if canonical_tools else parts.tools,
            tools_record=take_record(parts.tools),
            blocks=blocks,
            digests=digests,
            classes=classes,
            hash_state=h,
            prefix_key=derive_key(contract, "prompt_prefix", h.hexdigest()),
            contract=contract,
            n_system=sum(1 for s in system_out if s),
            chars=sum(len(s) for s in system_out) + tools.shared.chars,
        )

    def _conversation(
        self,
        fmt: WireFormat,
        adapter: WireAdapter,
        parts: WireParts,
        stream: _Stream | None,
        shared: int | None = None,
    ) -> tuple[list[_Message], list[Any] | None, int]:
        """Analyse the conversation, reusing the stream's last results for messages
        equal by value to last time's that were history then and are history now
        (``shared``: how many, when already known).

        Returns the messages, records of them for the next call (``None``
        when a message holds a type whose equality cannot be trusted) and how
        many leading messages were reused.
        """
        new = parts.messages
        cur = parts.current
        k = 0
        msgs: list[_Message] = []
        records: list[Record] = []
        if stream is not None:
            old = stream.records
            k = _shared_messages(stream, new, cur) if shared is None else shared
            msgs = stream.messages[:k]
            records = old[:k]
            if k == stream.cur < cur:
                # Last call's current turn is history now (an agent's next call: its answer
                # and the tool results follow). Unchanged, its analysis holds as it is;
                # only its kind and stability as history are new.
                end = min(len(old), cur)
                for m in stream.messages[k : k + common_prefix(new[k:end], old[k:end])]:
                    h = self._as_history(adapter, m)
                    if h is None:
                        break
                    msgs.append(h)
                    records.append(old[k])
                    k += 1
        msgs = msgs + self._messages(fmt, adapter, new[k:], k, cur)
        for m in new[k:]:  # a loop, not a comprehension: no extra frame per request
            rec = take_record(m)
            if rec is None:
                return msgs, None, k
            records.append(rec)
        return msgs, records, k

    @staticmethod
    def _as_history(adapter: WireAdapter, m: _Message) -> _Message | None:
        """Current-turn message ``m`` as what it is in a later call, history (None: analyse it)."""
        msg = m.message
        kind = adapter.message_kind(msg)
        if kind is m.block.kind:
            dg = m.digest
        elif m.canonical is not None:
            dg = digest(kind.encode(), m.canonical)
        else:  # its canonical JSON was not kept
            return None
        block = trusted_block(
            kind,
            msg,
            role=m.block.role,
            stability=Stability.SESSION,
            data_classes=m.data_classes,
            trust=Trust.UNTRUSTED if kind is BlockKind.TOOL_RESULT else Trust.TRUSTED,
        )
        return _Message(msg, block, dg, m.data_classes, m.chars, m.normalized)

    def _learned(self, fam: _Family, i: int, t: _Text, kind: BlockKind) -> tuple[str, list[Fragment]]:
        """Apply what the family knows about system slot ``i``: the text to send and what moved.

        Detected values move only once the family has seen them change (see
        :meth:`SlotVolatility.changed_spans`); lines and whole blocks no regex
        caught move once learned.
        """
        slot = fam.slots.get(f"s{i}")
        if slot is None:
            slot = fam.slots[f"s{i}"] = SlotVolatility(learn_after=self.policy.relocation.learn_after)
        if slot.previous is not t.lines:
            slot.observe(t.lines)
        if not self._relocates(kind):
            return t.stable, t.fragments
        label = t.block.label if i == 0 else f"{t.block.label}[{i}]"
        chosen = slot.changed_spans(t.canonical, t.spans)
        if len(chosen) == len(t.spans):
            text, frags = t.stable, t.fragments
        elif not chosen:
            text, frags = t.canonical, []
        else:
            text, frags = relocate_spans(t.canonical, chosen, label)
        if i > 0 and slot.volatile_block and text:
            whole = Fragment(source=label, kind="learned_block", line=1, text=text)
            return "", [*frags, whole]
        # Learned lines are anchored on the fully relocated text; while some
        # detected value is still kept in place they wait for the next request.
        idx = slot.volatile_lines(t.lines) if text is t.stable else []
        if not idx:
            return text, frags
        spans = []
        offsets = [0]
        for line in t.lines:
            offsets.append(offsets[-1] + len(line) + 1)
        for j in idx:
            spans.append((offsets[j], offsets[j] + len(t.lines[j]), "learned"))
        stable, fs = relocate_spans(t.stable, spans, label)
        return stable, [*t.fragments, *fs]

    @staticmethod
    def _sent_digest(t: _Text, sent: str) -> str:
        """Digest of the system text actually sent for ``t``."""
        if sent is t.stable:
            return t.digest
        if sent is t.canonical:
            if t.canonical_digest is None:
                t.canonical_digest = digest(t.block.kind.encode(), sent.encode())
            return t.canonical_digest
        return digest(t.block.kind.encode(), sent.encode())

    def _history(self, pre: _Prefix, history: list[_Message]) -> _History:
        """The plan's prefix and history part for ``history`` after ``pre``: the prefix's own
        part (no history yet) extended by it."""
        policy = self.policy
        prefix_only = _History(
            blocks=pre.blocks,
            digests=pre.digests,
            classes=pre.classes,  # never written to: an extension copies it first
            chars=[],
            chars_total=0,
            history_digests=[],
            normalized=False,
            policy=policy,
            blocked=first_blocked(policy, pre.classes),
            class_set=class_set(pre.classes),
            hash_state=pre.hash_state,
        )
        return self._extend_history(prefix_only, history)

    def _extend_history(self, old: _History, new: list[_Message]) -> _History:
        """``old`` (same prefix, same policy) with ``new`` history messages after it.

        An agent's next call usually resends its whole history plus last call's answer and
        the tool results: only those are added, to copies of last call's lists. A history
        built anew is its prefix's part extended the same way (:meth:`_history`).
        """
        at = len(old.blocks)
        classes = old.classes
        blocks, digests, chars, history_digests = old.blocks.copy(), old.digests.copy(), old.chars.copy(), []
        normalized, blocked, present = old.normalized, old.blocked, old.class_set
        for i, m in enumerate(new):
            blocks.append(m.block)
            digests.append(m.digest)
            chars.append(m.chars)
            history_digests.append(m.digest)
            normalized = normalized or m.normalized
            if m.data_classes:
                if classes is old.classes:
                    classes = dict(old.classes)
                classes[at + i] = list(m.data_classes)
                present = present.union(m.data_classes)
                if blocked is None and not old.policy.provider_caching_allowed(m.data_classes):
                    blocked = at + i
        return _History(
            blocks=blocks,
            digests=digests,
            classes=classes,
            chars=chars,
            chars_total=old.chars_total + sum(chars[len(old.chars) :]),
            history_digests=old.history_digests + history_digests,
            normalized=normalized,
            policy=old.policy,
            blocked=blocked,
            class_set=present,
            hash_state=self._extended_hash(old.hash_state, bool(at), history_digests),
        )

    @staticmethod
    def _extended_hash(state: _Hash, after_some: bool, digests: list[str]) -> _Hash:
        """``state`` (a hash of digests joined by NUL) extended by ``digests``: the same
        bytes as :func:`promptcache.keys.chain_hashes`. ``state`` itself is left as it is."""
        if not digests:
            return state
        h = state.copy()
        h.update(("\x00" if after_some else "").encode() + "\x00".join(digests).encode())
        return h

    def _plan_for_request(
        self,
        fmt: WireFormat,
        model: str,
        tenant: str,
        pre: _Prefix,
        cur: int,
        hist: _History,
        blocks: list[Block],
        digests: list[str],
        classes: dict[int, list[str]],
        conversation_key: str | None,
    ) -> Plan:
        """The plan of a request: ``blocks``/``digests`` are the prefix, history and current
        turn (the volatile block is inserted here); ``classes`` already in plan indices."""
        prefix_end = len(pre.blocks)
        sections = (
            ["static"] * prefix_end + ["history"] * cur + ["current"] * (len(blocks) - prefix_end - cur)
        )
        if conversation_key is None:
            conversation_key = derive_key(pre.contract, "conversation", hist.hash_state.hexdigest())
        if pre.volatile_block is not None and pre.volatile_digest is not None:
            at = prefix_end + cur
            blocks.insert(at, pre.volatile_block)
            digests.insert(at, pre.volatile_digest)
            sections.insert(at, "volatile")
        return Plan(
            format=fmt,
            model=model,
            tenant=tenant,
            family=pre.fid,
            blocks=blocks,
            digests=digests,
            sections=sections,
            prefix_end=prefix_end,
            prefix_key=pre.prefix_key,
            conversation_key=conversation_key,
            fragments=pre.fragments,
            data_classes=classes,
            mode=self.mode,
        )
