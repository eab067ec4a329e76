"""``PromptCache``: the one object the framework integrations use.

``prepare_request`` runs the pipeline of DESIGN.md in order, on every call:

    split (:mod:`promptcache.wire`) -> analyse each block through one content-keyed memo
    (:mod:`promptcache.pipeline.analyse`) -> learn per family
    (:mod:`promptcache.pipeline.learning`) -> layout and keys
    (:mod:`promptcache.pipeline.assemble`) -> hints (:mod:`promptcache.providers.hints`,
    from the plan) -> join (:mod:`promptcache.wire`)

An unchanged block costs one memo lookup; nothing else is remembered between calls but
the families' learned state.

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

import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from promptcache.artifacts import ResponseCache, RetrievalCache, ToolOutputCache, open_store
from promptcache.blocks import Block, BlockKind
from promptcache.explain import Snapshot
from promptcache.figures import Degradation
from promptcache.formats import WireFormat, parse_format
from promptcache.keys import Contracts, KeyContract
from promptcache.pipeline.analyse import MAX_RELOCATED_VALUES, Analyser, Message
from promptcache.pipeline.assemble import (
    VOLATILE_FOOTER,
    VOLATILE_HEADER,
    prefix_of,
    volatile_text,
    wire_layout,
)
from promptcache.pipeline.bounds import (
    Degradations,
    json_size,
    passed_through,
    positive_count,
    unrelocated_blocks,
    unrelocated_decisions,
)
from promptcache.pipeline.fleet import FleetLearning
from promptcache.pipeline.learning import (
    Families,
    conversation_change,
    conversation_id,
    family_id,
    keep_layout,
    learn,
    lineage_id,
    remember,
    slot_label,
)
from promptcache.pipeline.loose import plan_blocks
from promptcache.plan import Plan, Prepared
from promptcache.policy import Policy
from promptcache.providers.conversation_options import ConversationOptions
from promptcache.providers.diagnostics import Diagnosis
from promptcache.providers.hints import HintContext, apply_hints
from promptcache.stats import CacheStats, StatsRecorder, persist_stats, recorder_for
from promptcache.telemetry.hooks import span as telemetry_span
from promptcache.telemetry.hooks import tracing as telemetry_tracing
from promptcache.tenancy import checked_tenant
from promptcache.tiers.router import TieredStore
from promptcache.usage import CacheUsage
from promptcache.wire import WireAdapter, WireFormatError, WireParts, get_adapter

if TYPE_CHECKING:
    from promptcache.artifacts.retrieval import Authorizer
    from promptcache.catalog import Catalog
    from promptcache.providers.gemini_cache import GeminiCacheManager, GeminiTransport
    from promptcache.providers.prewarm import PrewarmReport

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_RELOCATED_VALUES",
    "VOLATILE_FOOTER",
    "VOLATILE_HEADER",
    "Mode",
    "PromptCache",
]

Mode = Literal["active", "shadow"]

MAX_BODY_BYTES = 8_000_000
"""Largest request body, in bytes of its JSON, that ``prepare_request`` processes by default.

8 MB is about 2 million tokens, more than any model in the catalog reads; processing is linear
(``make reliability`` measures it), so the bound is on the time one call may add, not a guard
against a blow-up. A larger body is sent as it came, counted as ``body_too_large``."""


class PromptCache:
    """Lays requests out for caching, keys them per tenant and places provider hints.

    ``PromptCache()`` works with no arguments (embedded defaults). ``mode="shadow"``
    computes every figure but returns requests unchanged.

    Memory is bounded: one memo of analysed blocks (system texts, tool lists, messages),
    at most ``memo_entries`` entries holding ``memo_chars`` characters, least recently
    used out; at most ``max_families`` prefix families (their learned volatility and
    last request's fingerprints), oldest out, and as many key contracts (per tenant and
    model); usage figures for at most :data:`promptcache.stats.MAX_ROWS` (tenant, model)
    pairs, the least recently used added up in one ``(other)`` row (see
    ``docs/operations.md``, "Memory"). A request body larger than ``max_body_bytes`` of JSON
    is passed through unprocessed (counted in :meth:`degradations`). A system text or tool
    schema holding more than ``max_relocated_values`` detected volatile values is sent in place,
    not relocated (:data:`MAX_RELOCATED_VALUES`; counted in :meth:`degradations`).
    ``stream_chars`` is accepted for compatibility and has no effect (no conversation is kept
    between calls).

    Thread-safe: the memo and the family table have their own locks, each family's
    learning runs under its lock, and nothing else is shared between calls.

    ``clock``: the wall clock (``time.time`` by default) that a value giving the current time
    (a clock line to the minute) is compared with; such a value moves out of the prefix from a
    family's first call. A replay or simulation passes its requests' own times.

    ``record_stats``: write this cache's usage figures (counts, tokens, cost per tenant
    and model; never prompt text) into its store for ``promptcache stats``, off the call
    path. On by default; ``False`` or ``PROMPTCACHE_RECORD_STATS=0`` turns it off.

    Provider opt-ins, off by default (``docs/concepts/providers.md``): ``cache_diagnostics``
    chains every request of a conversation to the previous answer (Anthropic Messages on the
    Claude API; OpenAI Responses on GPT-5.6 and later) and reads the provider's miss verdict into
    ``plan.explain()`` and the figures; the Anthropic ``mid_conversation_tools`` and
    ``mid_conversation_system`` express a conversation's tool additions and removals, and text
    appended to its system prompt, as mid-conversation changes on the models that take them.
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
        fleet: bool | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_relocated_values: int = MAX_RELOCATED_VALUES,
        cache_diagnostics: bool = False,
        mid_conversation_tools: bool = False,
        mid_conversation_system: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = (
            policy if isinstance(policy, Policy) else Policy() if policy is None else Policy.load(policy)
        )
        if mode not in ("active", "shadow"):
            raise ValueError(f"mode={mode!r}: use 'active' or 'shadow'")
        self.mode: Mode = mode
        #: Bodies with more bytes of JSON than this are passed through unprocessed (:data:`MAX_BODY_BYTES`).
        self.max_body_bytes = positive_count("max_body_bytes", max_body_bytes, "bytes")
        #: A system text or tool schema with more detected volatile values than this is not
        #: relocated (:data:`MAX_RELOCATED_VALUES`).
        self.max_relocated_values = positive_count("max_relocated_values", max_relocated_values, "values")
        self._clock = clock  # see the class docstring
        self._degraded = Degradations()
        del stream_chars  # see the class docstring
        self._analyser = Analyser(memo_entries, memo_chars, max_relocated_values)
        self._stats = StatsRecorder()  # this cache's running totals (stats.recorder_for)
        self._families = Families(max_families)
        self._contracts = Contracts(max_families)
        #: Model facts (minimum cacheable lengths, TTL options, prices); ``None``
        #: uses the packaged, dated catalog.
        self.catalog = catalog
        self._store_spec = store
        self._store: TieredStore | None = store if isinstance(store, TieredStore) else None
        # A store the caller passed in is theirs to close; one we opened is ours.
        self._owns_store = not isinstance(store, TieredStore)
        self._authorize = authorize
        self._artifacts_lock = threading.Lock()
        self._artifacts: dict[str, Any] = {}  # the tool, retrieval and response caches, made on first use
        self._gemini_managers: list[GeminiCacheManager] = []
        #: Whether this cache reports spans, metrics and events (hashes and sizes only; nothing
        #: is exported until an exporter or observer listens, see :mod:`promptcache.telemetry`).
        self.telemetry = telemetry
        # Figures into the store for `promptcache stats` (off: record_stats=False or
        # PROMPTCACHE_RECORD_STATS=0); written off the call path, see promptcache.stats.
        self._stats_sink = persist_stats(self, record_stats)
        # Family decisions shared with the other processes on the store (pipeline.fleet): on
        # when a store was named (it is what the workers share), or by PROMPTCACHE_FLEET=1.
        if fleet is None:
            fleet = store is not None or os.environ.get("PROMPTCACHE_FLEET", "") == "1"
        self._fleet = FleetLearning(self._open_store, self.policy.relocation.learn_after) if fleet else None
        #: The per-conversation provider opt-ins (:mod:`promptcache.providers.conversation_options`).
        self.conversation_options = ConversationOptions(
            cache_diagnostics=bool(cache_diagnostics),
            tools=bool(mid_conversation_tools),
            system=bool(mid_conversation_system),
            size=max_families,
            catalog=catalog,
        )

    # -- promptcache's own caches ---------------------------------------------

    @property
    def store(self) -> TieredStore:
        """The tiered store behind the tool, retrieval and response caches.

        Opened on first use (``PromptCache()`` touches no disk until then): the
        embedded SQLite default, or what ``store=`` named (``redis://...``,
        ``rediss://``, cluster, sentinel, a Redis client or a ``TieredStore``).
        """
        store = self._open_store()
        if self.telemetry:
            return _instrumentation().observe_store(store)  # type: ignore[no-any-return]
        return store

    def _open_store(self) -> TieredStore:
        # The store itself, uninstrumented: the engine's own reads (shared family decisions) are
        # not the app's cache lookups, and are not reported as such.
        if self._store is None:
            with self._artifacts_lock:
                if self._store is None:
                    self._store = open_store(self._store_spec)
        return self._store

    @property
    def tools(self) -> ToolOutputCache:
        """The tool-output cache (side-effect classes honoured; see :mod:`promptcache.artifacts`)."""
        return self._artifact("tools", lambda: ToolOutputCache(self.store, self.policy))  # type: ignore[no-any-return]

    @property
    def retrieval(self) -> RetrievalCache:
        """The retrieval cache; ``authorize=`` re-checks documents on every hit."""
        return self._artifact(  # type: ignore[no-any-return]
            "retrieval", lambda: RetrievalCache(self.store, self.policy, authorize=self._authorize)
        )

    @property
    def responses(self) -> ResponseCache:
        """The response cache (only what the policy allows: low temperature, structured output)."""
        return self._artifact("responses", lambda: ResponseCache(self.store, self.policy))  # type: ignore[no-any-return]

    def _artifact(self, name: str, make: Callable[[], Any]) -> Any:
        made = self._artifacts.get(name)
        if made is None:
            made = self._artifacts[name] = make()
        return _instrumentation().observe_artifact(made, name) if self.telemetry else made

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

    def invalidate(self, tag: str, *, tenant: str | None = None) -> int:
        """Make entries tagged ``tag`` unreadable in every process; returns the new generation.

        With ``tenant``, only that tenant's entries (and, for a ``public:<tag>``, every
        tenant's); without, every tenant's (the operator's form). Gemini cached contents
        created under ``tag`` are deleted too. Raises ``InvalidationFailed`` when the shared
        tier cannot record it (then entries could survive, so the caller must know).
        """
        for manager in self._gemini_managers:
            manager.invalidate(tag=tag)
        return self.store.invalidate(tag, tenant=tenant)

    async def ainvalidate(self, tag: str, *, tenant: str | None = None) -> int:
        """The asyncio twin of :meth:`invalidate`."""
        return await self.store.ainvalidate(tag, tenant=tenant)

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
        resolved = self.resolve_tenant(tenant)
        recorder_for(self).record(resolved, usage)
        if self.telemetry:
            _instrumentation().observe_usage(usage, resolved)

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
        """The tenant a call runs under; refuses a missing tenant when the policy requires one.

        No tenant is the policy's ``default_tenant`` ("default" unless set): a call that names
        that tenant explicitly is the same tenant, on purpose (it is how an app names it).
        A tenant that is not text, or not valid Unicode, is refused with the field named.
        """
        return checked_tenant(tenant, self.policy)

    def contract(self, tenant: str, model: str) -> KeyContract:
        """The key contract for prompt entries of ``tenant`` on ``model``.

        Kept for the ``max_families`` pairs made last (made again when needed: it is a pure
        function of its fields), so that a process serving many tenants holds a bounded table.
        """
        return self._contracts.get(tenant, model, self.policy.version)

    # -- the pipeline -----------------------------------------------------------

    def _relocates(self, kind: BlockKind) -> bool:
        r = self.policy.relocation
        return r.enabled and kind not in r.disabled_kinds

    def plan(self, blocks: Sequence[Block], *, model: str, tenant: str | None = None) -> Plan:
        """Lay ``blocks`` out static-first, canonicalize them and key them for ``tenant``.

        Volatile values in static blocks are relocated into a labelled volatile
        block placed after the history and before the current user turn.
        """
        tenant = self.resolve_tenant(tenant)
        return plan_blocks(
            blocks,
            analyser=self._analyser,
            relocates=self._relocates,
            pin_tool_order=self.policy.layout.pin_tool_order,
            contract=self.contract(tenant, model),
            model=model,
            tenant=tenant,
            mode=self.mode,
            on_unrelocated=lambda over: self._degraded.unrelocated("blocks", over, self.max_relocated_values),
        )

    def prepare_request(
        self,
        body: Mapping[str, Any],
        *,
        format: str | WireFormat,
        model: str | None = None,
        tenant: str | None = None,
        body_bytes: int | None = None,
    ) -> Prepared:
        """Rewrite a provider request ``body`` for caching, in the same wire format.

        System/developer text is canonicalized and its volatile values relocated
        after the stable prefix; tools are put in canonical JSON and sorted by
        name; the history keeps its order; provider caching hints are placed.
        ``body_bytes``: the body's size as sent, when the caller has it (the transport does),
        for the ``max_body_bytes`` check; otherwise it is measured.
        """
        if self.telemetry:
            return _instrumentation().observe_prepare(  # type: ignore[no-any-return]
                lambda: self._prepare(body, format=format, model=model, tenant=tenant, body_bytes=body_bytes)
            )
        return self._prepare(body, format=format, model=model, tenant=tenant, body_bytes=body_bytes)

    def _prepare(
        self,
        body: Mapping[str, Any],
        *,
        format: str | WireFormat,
        model: str | None,
        tenant: str | None,
        body_bytes: int | None = None,
    ) -> Prepared:
        fmt = parse_format(format)
        if type(body) is not dict:
            if not isinstance(body, Mapping):
                raise WireFormatError(f"{fmt.value}: the request body must be a JSON object")
            body = dict(body)  # adapters read a dict; nothing below writes to the caller's
        model = model or body.get("model") or body.get("modelId")
        if not isinstance(model, str) or not model:
            raise WireFormatError(f"{fmt.value}: no model in the body; pass model=...")
        tenant = self.resolve_tenant(tenant)
        size = json_size(body) if body_bytes is None else body_bytes
        if size is not None and size > self.max_body_bytes:
            first = self._degraded.count(Degradation.BODY_TOO_LARGE)
            return passed_through(body, fmt, model, tenant, size, self.max_body_bytes, self.mode, warn=first)
        adapter = get_adapter(fmt)
        parts = adapter.split(body)
        if not telemetry_tracing():  # no span, not even its attributes, when nobody traces
            return self._prepare_parts(fmt, adapter, parts, body, model, tenant)
        with telemetry_span("promptcache.canonicalize", {"promptcache.format": fmt.value}):
            return self._prepare_parts(fmt, adapter, parts, body, model, tenant)

    def record_answer(self, plan: Plan, response_id: str | None, diagnosis: Diagnosis | None) -> None:
        """Read a provider's answer back into its request's plan: the response id becomes what its
        conversation's next request names (cache diagnostics: Anthropic's ``previous_message_id``,
        OpenAI's ``comparison_response_id``), and the provider's verdict on the request's miss
        joins ``plan.explain()``. The transport calls it for every answer."""
        self.conversation_options.record_answer(plan, response_id, diagnosis)

    def degradations(self) -> dict[str, int]:
        """How many requests this cache absorbed a fault for, by :class:`~promptcache.figures.Degradation`
        value: ``body_too_large`` (a body above ``max_body_bytes``, passed through unprocessed) and
        ``too_many_volatile`` (a system text or tool schema above ``max_relocated_values``, sent in
        place, not relocated)."""
        return self._degraded.snapshot()

    def _prepare_parts(
        self,
        fmt: WireFormat,
        adapter: WireAdapter,
        parts: WireParts,
        body: dict[str, Any],
        model: str,
        tenant: str,
    ) -> Prepared:
        analyser, policy = self._analyser, self.policy
        # analyse: each block through the memo
        kinds = parts.system_kinds
        texts = [
            analyser.text(t, k, slot_label(k, i), self._relocates(k))
            for i, (t, k) in enumerate(zip(parts.system, kinds, strict=True))
        ]
        tools = analyser.tools(
            fmt, adapter, parts.tools, policy.layout.pin_tool_order, self._relocates(BlockKind.TOOL_SCHEMA)
        )
        cur = parts.current
        history = analyser.history(fmt, adapter, parts.messages[:cur])
        turn: list[Message] = [analyser.message(fmt, adapter, m, True) for m in parts.messages[cur:]]
        # learn: what the family decides for this request's system texts and tools
        fid = family_id(fmt.value, model, tenant, tools.raw_order, len(parts.system))
        fam = self._families.get(fid)
        contract = self.contract(tenant, model)
        if self._fleet is not None:
            self._fleet.before(fam, fid, contract, tenant)
        if tools.layout and not policy.layout.pin_tool_order:
            order = self._families.tool_order(fam, lineage_id(fmt.value, model, tenant), tools.raw_order)
            if order != tools.layout:  # a grown or shrunk tool set keeps its lineage's order
                tools = analyser.tools(
                    fmt, adapter, parts.tools, False, self._relocates(BlockKind.TOOL_SCHEMA), order
                )
        conversation = conversation_id(history.messages[:1] or turn[:1])
        learned = learn(
            fam,
            texts,
            kinds,
            tools,
            learn_after=policy.relocation.learn_after,
            relocates=[self._relocates(k) for k in kinds],
            now=self._clock(),
        )
        learned = keep_layout(fam, conversation, texts, tools, learned)
        over = unrelocated_blocks(texts, kinds, tools, learned.canonical_tools)
        if over:
            self._degraded.unrelocated(fmt.value, over, self.max_relocated_values)
        if self._fleet is not None:
            self._fleet.after(fam, fid, contract, tenant)
        # layout and keys
        prefix = prefix_of(texts, learned, tools)
        vt = volatile_text(learned.fragments) if learned.fragments else None
        laid = wire_layout(
            contract=contract,
            prefix=prefix,
            history=history,
            current=turn,
            volatile=vt,
            tool_names=tools.raw_order,
        )
        snapshot = Snapshot(
            system=learned.prints,
            tool_order=tools.raw_order,
            tool_raw=tools.raw_crc,
            tool_canonical=tools.shared.canonical_by_name,
            history=history.digests,
            messages=history.digests + [m.history_digest for m in turn],
            tools_canonical=learned.canonical_tools,
            tool_unrelocated=tools.shared.unrelocated if learned.canonical_tools else {},
        )
        previous = remember(fam, snapshot, conversation)
        change = conversation_change(previous.messages, snapshot.messages) if previous else None
        # join: the caller's own objects wherever nothing changed them
        sent = parts.messages
        if history.normalized or any(m.normalized for m in turn):
            msgs = history.messages + turn
            sent = [m.message if m.normalized else msg for m, msg in zip(msgs, parts.messages, strict=True)]
        sent_tools = tools.shared.values if learned.canonical_tools else tools.as_sent_in_order(parts.tools)
        new_body, volatile_at = adapter.join(parts, learned.system_out, sent_tools, sent, vt)
        # hints, from the plan
        ctx = HintContext(
            format=fmt,
            model=model,
            policy=policy,
            n_blocks=len(laid.blocks),
            prefix_end=laid.prefix_end,
            prefix_key=laid.prefix_key,
            routing_key=laid.routing_key,
            data_classes=laid.data_classes,
            n_system=prefix.n_system,
            n_tools=len(tools.shared.canonical),
            history_end=cur,
            has_volatile=vt is not None,
            prefix_chars=prefix.chars,
            message_chars=history.chars + [m.chars for m in turn],
            catalog=self.catalog,
            volatile_at=volatile_at,
            resent_messages=change.resent if change else 0,
            stable_messages=change.stable if change else None,
        )
        hinted, hints, notes = apply_hints(new_body, ctx)
        chain = None
        if self.conversation_options.active and conversation is not None and self.mode == "active":
            hinted, hints, notes, chain = self.conversation_options.apply(
                fmt, hinted, hints, notes, (tenant, conversation), model
            )
        plan = laid.plan(
            format=fmt,
            model=model,
            tenant=tenant,
            family=fid,
            fragments=learned.fragments,
            hints=hints,
            decisions=[*notes, *unrelocated_decisions(over, self.max_relocated_values)] if over else notes,
            mode=self.mode,
            engine=(contract, snapshot, previous, chain),
        )
        # Both fields are the engine's own typed values: validating them again only costs.
        return Prepared.model_construct(body=dict(body) if self.mode == "shadow" else hinted, plan=plan)


def _instrumentation() -> Any:
    # Imported on first use: an uninstrumented cache never loads the OpenTelemetry glue.
    from promptcache.telemetry import instrumentation

    return instrumentation
