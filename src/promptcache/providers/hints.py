"""Provider caching hints placed on a rewritten request body.

* Anthropic Messages: ``cache_control`` breakpoints, at most 4 per request
  including the caller's, at the end of the conversation (before the volatile
  block), the end of the system prompt (covers tools and system: Anthropic
  renders tools → system → messages) and the end of the tools; 1h TTL on the
  static sections when the policy keeps prefixes an hour or more and the
  catalog lists a 1h option for the model (longer TTLs must come first, which
  this order guarantees); none below the model's minimum cacheable length.
* Bedrock Converse: ``cachePoint`` blocks at the same places.
* OpenAI Chat / Responses: ``prompt_cache_key`` from the tenant-scoped routing key
  (:func:`promptcache.keys.routing_key`: tool set and the start of the system prompt), so
  requests of one agent are routed to the same cache whatever changes further down;
  ``prompt_cache_retention: "24h"`` under the rule in :func:`openai_retention`;
  on models the catalog marks ``explicit`` (gpt-5.6 and later),
  ``prompt_cache_options: {"mode": "explicit"}`` with ``prompt_cache_breakpoint``
  content parts at the end of the static prefix and of the conversation.
* Gemini: implicit caching needs no hint; explicit cached contents are
  created by :mod:`promptcache.providers.gemini_cache`, not here.

Minimum cacheable lengths, TTL options and the ``explicit`` marker come from
the dated catalog (:mod:`promptcache.catalog`). For a model the catalog does
not know, or whose minimum it leaves unconfirmed (``null``), the minimum is
:data:`FALLBACK_MIN_TOKENS` (1024): the documented minimum of most Claude
models, OpenAI and Gemini Flash. It is conservative in the sense that matters
here: a breakpoint on a prefix below a provider's real minimum is ignored at
no cost, while refusing one above it would lose a cache. Unknown models get
no 1h TTL, no ``24h`` retention and no explicit breakpoints, since a field the
model does not accept turns into a 400 (see :mod:`promptcache.providers.fallback`).

Content whose data class the policy keeps out of provider caches (secrets
always) stops placement: no breakpoint is put at or after it, no OpenAI key
or retention is sent, and where the provider has an opt-out it is used
(OpenAI explicit mode with no breakpoints caches nothing; gateways' opt-out
headers are in :mod:`promptcache.providers.gateways`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from promptcache.catalog import CacheRules, Catalog, ModelInfo, UnknownModelError, default_catalog
from promptcache.catalog import use_catalog as use_catalog  # kept importable from here
from promptcache.formats import WireFormat
from promptcache.plan import Hint, Plan
from promptcache.policy import EntryType, Policy
from promptcache.wire import VolatileAt

MAX_BREAKPOINTS = 4
FALLBACK_MIN_TOKENS = 1024
OPENAI_EXTENDED_RETENTION_S = 86400
_CHARS_PER_TOKEN = 4  # estimate; the simulator counts exactly where it can

# (model, format) -> catalog entry or None, for the default catalog it was filled from
# (use_catalog may swap it): the hot path pays one dict lookup.
_info_memo: dict[tuple[str, WireFormat], ModelInfo | None] = {}
_info_memo_of: list[Catalog | None] = [None]
_rules_memo: dict[tuple[str, WireFormat], CacheRules | None] = {}
_rules_memo_of: list[Catalog | None] = [None]


def _lookup(catalog: Catalog, model: str, fmt: WireFormat) -> ModelInfo | None:
    # Claude through anthropic-messages may be a Bedrock id (InvokeModel): let the
    # catalog's own id sniffing pick the provider. Other formats try their provider
    # first, then any (a Bedrock model the bedrock table lacks is still a Claude model).
    order: tuple[str | None, ...] = (None,) if fmt is WireFormat.ANTHROPIC_MESSAGES else (fmt.provider, None)
    for provider in order:
        if provider is not None and provider not in catalog.providers:
            continue
        try:
            return catalog.lookup(model, provider=provider)
        except UnknownModelError:
            continue
    return None


def model_info(model: str, fmt: WireFormat, catalog: Catalog | None = None) -> ModelInfo | None:
    """The catalog entry for ``model`` spoken through ``fmt``, or None if the catalog lacks it."""
    if catalog is not None:
        return _lookup(catalog, model, fmt)
    key = (model, fmt)
    default = default_catalog()
    if _info_memo_of[0] is not default:
        _info_memo.clear()
        _info_memo_of[0] = default
    if key not in _info_memo:
        if len(_info_memo) > 4096:
            _info_memo.clear()
        _info_memo[key] = _lookup(default, model, fmt)
    return _info_memo[key]


def min_cacheable_tokens(
    model: str, fmt: WireFormat = WireFormat.ANTHROPIC_MESSAGES, catalog: Catalog | None = None
) -> int:
    """The model's minimum cacheable prompt length per the catalog, else :data:`FALLBACK_MIN_TOKENS`.

    >>> min_cacheable_tokens("claude-haiku-4-5")
    4096
    >>> min_cacheable_tokens("some-unknown-model")
    1024
    """
    info = model_info(model, fmt, catalog)
    if info is None:
        rules = family_rules(model, fmt, catalog)
        found = rules.min_cacheable_tokens if rules is not None else None
        return FALLBACK_MIN_TOKENS if found is None else found
    if info.spec.min_cacheable_tokens is None:
        return FALLBACK_MIN_TOKENS
    return info.spec.min_cacheable_tokens


def ttl_options(model: str, fmt: WireFormat, catalog: Catalog | None = None) -> frozenset[str]:
    """The cache TTL labels the catalog lists for the model (empty when unknown)."""
    info = model_info(model, fmt, catalog)
    if info is not None:
        return _ttl_set(tuple(info.spec.ttl_options))
    rules = family_rules(model, fmt, catalog)
    return _ttl_set(rules.ttl_options) if rules is not None else frozenset()


def family_rules(model: str, fmt: WireFormat, catalog: Catalog | None = None) -> CacheRules | None:
    """The rules the catalog's family entries give a model it does not list itself (the TTLs all
    Claude models share, the cachePoint rules of a Bedrock application inference profile ARN),
    or None (:meth:`promptcache.catalog.Catalog.rules`)."""
    provider = None if fmt is WireFormat.ANTHROPIC_MESSAGES else fmt.provider
    if catalog is not None:
        return catalog.rules(model, provider=provider if provider in catalog.providers else None)
    default = default_catalog()
    if _rules_memo_of[0] is not default:
        _rules_memo.clear()
        _rules_memo_of[0] = default
    key = (model, fmt)
    if key not in _rules_memo:
        if len(_rules_memo) > 4096:
            _rules_memo.clear()
        _rules_memo[key] = default.rules(model, provider=provider if provider in default.providers else None)
    return _rules_memo[key]


@lru_cache(maxsize=256)
def _ttl_set(options: tuple[str, ...]) -> frozenset[str]:
    # One shared set per distinct option list: this runs on every hinted request.
    return frozenset(options)


@dataclass(slots=True)
class HintContext:
    """What the hint placement needs to know about a rewritten request: plain figures of its
    plan (the placement reads nothing back from the joined body but ``volatile_at``).

    ``n_blocks``, ``prefix_end``, ``prefix_key``, ``routing_key`` and ``data_classes`` are the
    plan's (blocks in sent order, the static prefix's length and key, the key a provider routes
    by, data classes per block index).
    ``catalog`` replaces the packaged model catalog (overrides included).
    """

    format: WireFormat
    model: str
    policy: Policy
    n_blocks: int
    prefix_end: int
    prefix_key: str
    routing_key: str
    data_classes: Mapping[int, Sequence[str]]
    n_system: int
    n_tools: int
    history_end: int
    has_volatile: bool
    prefix_chars: int
    message_chars: list[int]
    catalog: Catalog | None = None
    #: Where the body carries the volatile block (from the join that placed it, never
    #: searched for in the body); None: there is none.
    volatile_at: VolatileAt | None = None
    #: Leading conversation messages (after the system prompt) that the conversation's previous
    #: request sent the same; 0 for a first request.
    resent_messages: int = 0
    #: Leading conversation messages the next request is predicted to resend unchanged, when the
    #: conversation rewrites part of what it sent before; None when it only appends
    #: (:func:`promptcache.pipeline.learning.conversation_change`).
    stable_messages: int | None = None


@lru_cache(maxsize=1024)
def _hint(*, kind: str, where: str, ttl: str | None = None, prefix_tokens: int | None = None) -> Hint:
    # Hints are frozen, so equal ones are shared: building a pydantic model per
    # hint was a visible share of a warm prepare_request.
    return Hint(kind=kind, where=where, ttl=ttl, prefix_tokens=prefix_tokens)


def first_blocked(policy: Policy, data_classes: Mapping[int, Sequence[str]]) -> int | None:
    """Index of the first block whose data classes ``policy`` keeps out of provider caches."""
    for i in sorted(data_classes):
        if not policy.provider_caching_allowed(data_classes[i]):
            return i
    return None


def class_set(data_classes: Mapping[int, Sequence[str]]) -> frozenset[str]:
    """Every data class present in a plan's ``data_classes``."""
    return frozenset(dc for dcs in data_classes.values() for dc in dcs)


def _blocked_from(ctx: HintContext) -> int:
    """Index (plan order) of the first block provider caching may not cover."""
    blocked = first_blocked(ctx.policy, ctx.data_classes) if ctx.data_classes else None
    return ctx.n_blocks if blocked is None else blocked


def caching_forbidden(plan: Plan, policy: Policy) -> bool:
    """True if the policy keeps some content of ``plan`` out of provider caches.

    Gateways use it to switch on their opt-out (e.g. Heroku's header).
    """
    return any(not policy.provider_caching_allowed(dc) for dc in plan.data_classes.values())


def apply_hints(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    """Place the provider's caching hints on ``body``; returns body, hints and notes."""
    if not ctx.policy.entry(EntryType.PROMPT_PREFIX).eligible:
        return body, [], ["prompt_prefix caching not eligible by policy: no hints"]
    if ctx.format is WireFormat.ANTHROPIC_MESSAGES:
        return _anthropic(body, ctx)
    if ctx.format is WireFormat.BEDROCK_CONVERSE:
        return _bedrock(body, ctx)
    if ctx.format in (WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES):
        return _openai(body, ctx)
    return body, [], ["gemini: implicit prefix caching, no request hint"]


# -- OpenAI -------------------------------------------------------------------------------

_BREAKPOINT = {"mode": "explicit"}
_OPENAI_TEXT_PART = {WireFormat.OPENAI_CHAT: "text", WireFormat.OPENAI_RESPONSES: "input_text"}
# developers.openai.com/api/docs/guides/prompt-caching ("GPT-5.6 and later", read 2026-12-07):
# a breakpoint goes on "a supported content block inside an input message"; top-level
# ``instructions`` cannot carry one; the guide's multi-turn agent puts one on a tool result
# (``function_call_output`` whose output is a list of ``input_text``). The content parts whose
# types carry ``prompt_cache_breakpoint`` in openai 2.54 are text, image, file and input audio
# (Chat) and input_text, input_image, input_file (Responses). Assistant turns are never marked:
# their parts are output types, and a breakpoint on the next user/tool turn covers them.
_OPENAI_MARKABLE_ROLES = frozenset({"user", "system", "developer", "tool"})
_OPENAI_MARKABLE_PARTS = frozenset(
    {"text", "image_url", "input_audio", "file", "input_text", "input_image", "input_file"}
)
#: Earlier eligible message endings GPT-5.6 implicit mode looks up besides its own breakpoint
#: (the guide, "How prefix matching works"); a conversation that grew by more since its previous
#: request needs an explicit breakpoint where that request ended.
OPENAI_IMPLICIT_LOOKBACK_MESSAGES = 20


def policy_prefix_ttl(ctx: HintContext) -> int:
    """Seconds the policy keeps this request's prefix: the prompt_prefix default TTL,
    shortened by the data classes present (0 when a class denies caching)."""
    decision = ctx.policy.decide(EntryType.PROMPT_PREFIX, data_classes=class_set(ctx.data_classes))
    return decision.ttl_seconds if decision.allowed else 0


def openai_retention(options: frozenset[str], policy_ttl_s: int) -> str | None:
    """The ``prompt_cache_retention`` to request, or None for the provider's default.

    Rule: ``"24h"`` when the catalog lists ``"24h"`` for the model and the policy's
    prompt_prefix TTL (its *default*, shortened by the data classes in the request) is at
    least 24 hours. The default, not the max, because retention is something promptcache
    asks for on the caller's behalf, and the default is what the policy asks for when the
    caller names no TTL; the max only bounds what a caller may ask for. Anything shorter
    keeps the provider's in-memory retention (minutes, at most an hour).

    >>> openai_retention(frozenset({"in_memory", "24h"}), 86400)
    '24h'
    >>> openai_retention(frozenset({"in_memory", "24h"}), 3600) is None
    True
    """
    if "24h" in options and policy_ttl_s >= OPENAI_EXTENDED_RETENTION_S:
        return "24h"
    return None


def _openai(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    notes: list[str] = []
    hints: list[Hint] = []
    options = ttl_options(ctx.model, ctx.format, ctx.catalog)
    explicit = "explicit" in options
    blocked = _blocked_from(ctx)
    if blocked < ctx.prefix_end:
        notes.append(
            "system prompt or tools hold content policy keeps out of provider caches: no prompt_cache_key"
        )
        if explicit and "prompt_cache_options" not in body and "prompt_cache_retention" not in body:
            # gpt-5.6+: explicit mode with no breakpoint caches nothing (the opt-out).
            notes.append(
                "prompt_cache_options mode explicit without breakpoints: the provider caches nothing"
            )
            return (
                {**body, "prompt_cache_options": dict(_BREAKPOINT)},
                [_hint(kind="prompt_cache_options", where="$.prompt_cache_options")],
                notes,
            )
        notes.append(f"{ctx.model}: OpenAI caches long prompts automatically and offers no opt-out")
        return body, [], notes
    out = dict(body)
    if "prompt_cache_key" in body:
        notes.append("prompt_cache_key set by the caller: kept")
    else:
        out["prompt_cache_key"] = "pc-" + ctx.routing_key[:32]
        hints.append(_hint(kind="prompt_cache_key", where="$.prompt_cache_key"))
    conv_blocked = blocked < ctx.n_blocks
    ttl_s = policy_prefix_ttl(ctx)
    if explicit:
        # prompt_cache_options.ttl supersedes prompt_cache_retention on these models and
        # OpenAI rejects a request carrying both, so no retention is added here.
        out, more, extra = _openai_breakpoints(out, ctx, conv_blocked)
        hints.extend(more)
        notes.extend(extra)
        if ttl_s < 1800 and any(h.kind == "prompt_cache_breakpoint" for h in more):
            notes.append("OpenAI keeps explicit breakpoints at least 30m, longer than the policy's TTL")
        return out, hints, notes
    if conv_blocked:
        notes.append(
            "conversation holds content policy keeps out of provider caches; OpenAI caches it "
            "automatically (no opt-out on this model), so no extended retention is requested"
        )
        return out, hints, notes
    if "prompt_cache_retention" in body:
        notes.append("prompt_cache_retention set by the caller: kept")
        return out, hints, notes
    retention = openai_retention(options, ttl_s)
    if retention is not None:
        out["prompt_cache_retention"] = retention
        hints.append(_hint(kind="prompt_cache_retention", where="$.prompt_cache_retention", ttl=retention))
    elif options == frozenset({"24h"}) and ttl_s < OPENAI_EXTENDED_RETENTION_S:
        notes.append(f"{ctx.model} retains cached prefixes 24h whatever is asked; policy TTL is shorter")
    return out, hints, notes


def _openai_parts(item: Any) -> Any:
    """The content parts of an input item: a message's ``content``, a tool result's ``output``."""
    if not isinstance(item, dict):
        return None
    return item.get("output") if item.get("type") == "function_call_output" else item.get("content")


def _count_openai_breakpoints(items: list[Any]) -> int:
    n = 0
    for it in items:
        parts = _openai_parts(it)
        if isinstance(parts, list):
            n += sum(1 for p in parts if isinstance(p, dict) and "prompt_cache_breakpoint" in p)
    return n


def _openai_markable(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    if item.get("type") == "function_call_output":
        return True
    return item.get("role") in _OPENAI_MARKABLE_ROLES and item.get("type", "message") == "message"


def _mark_openai_item(item: dict[str, Any], part_type: str) -> tuple[dict[str, Any], int] | None:
    """``item`` with a breakpoint on its last markable part, and that part's index; None if the
    item cannot carry one (an assistant turn, a function call, no markable part)."""
    if not _openai_markable(item):
        return None
    key = "output" if item.get("type") == "function_call_output" else "content"
    # A function_call_output's list output takes input_text parts, whatever the API.
    text_type = "input_text" if key == "output" else part_type
    content = item.get(key)
    if isinstance(content, str):
        return {
            **item,
            key: [{"type": text_type, "text": content, "prompt_cache_breakpoint": _BREAKPOINT}],
        }, 0
    if not isinstance(content, list):
        return None
    for j in range(len(content) - 1, -1, -1):
        part = content[j]
        if isinstance(part, dict) and part.get("type") in _OPENAI_MARKABLE_PARTS:
            parts = list(content)
            parts[j] = {**part, "prompt_cache_breakpoint": _BREAKPOINT}
            return {**item, key: parts}, j
    return None


def _openai_eligible_after(items: list[Any], start: int) -> int:
    """How many eligible message endings GPT-5.6 implicit mode sees after ``items[start]``: user
    messages and the last of each run of tool results (the guide, "Implicit mode")."""

    def is_tool(it: Any) -> bool:
        return isinstance(it, dict) and (it.get("type") == "function_call_output" or it.get("role") == "tool")

    n = 0
    for i in range(start + 1, len(items)):
        it = items[i]
        last_tool = is_tool(it) and not (i + 1 < len(items) and is_tool(items[i + 1]))
        if (isinstance(it, dict) and it.get("role") == "user") or last_tool:
            n += 1
    return n


def _openai_bridges(
    items: list[Any], ctx: HintContext, n_lead: int, vol: int | None, explicit: bool, part_type: str
) -> list[int]:
    """Items where the conversation's previous request wrote, when this request needs a
    breakpoint there to read it back: most useful first; empty when none is needed.

    GPT-5.6 looks a cached prefix up only at the lookup boundaries of the incoming request
    (developers.openai.com/api/docs/guides/prompt-caching, "How prefix matching works", read
    2026-12-07): in explicit-only mode its explicit breakpoints alone, in implicit mode also its
    own breakpoint and up to :data:`OPENAI_IMPLICIT_LOOKBACK_MESSAGES` earlier eligible message
    endings. The previous request wrote at the end of what it sent (its implicit breakpoint, or
    the stable end it predicted, which is where this request stops resending it unchanged:
    ``resent_messages``, the boundary the Anthropic path bridges, issue 22 decision 5) and, when
    it had a volatile block before its newest user message, at the item before that message.
    Implicit mode needs a bridge only once more eligible endings follow than it looks back over.
    """
    at = ctx.resent_messages
    if at <= 0:
        return []
    end = n_lead + at - 1
    if vol is not None and vol <= end:
        end += 1
    if end >= len(items) - 1:
        return []
    if not explicit and _openai_eligible_after(items, end) <= OPENAI_IMPLICIT_LOOKBACK_MESSAGES:
        return []
    minimum = min_cacheable_tokens(ctx.model, ctx.format, ctx.catalog)

    def markable_at_or_before(i: int) -> int | None:
        for j in range(i, n_lead - 1, -1):
            if j != vol and _mark_openai_item(items[j], part_type) is not None:
                return j
        return None

    def prefix_tokens(i: int) -> int:
        shift = 1 if vol is not None and vol <= i else 0
        return (ctx.prefix_chars + sum(ctx.message_chars[: i - n_lead + 1 - shift])) // _CHARS_PER_TOKEN

    found: list[int] = []
    sent_end = markable_at_or_before(end)
    if ctx.has_volatile and isinstance(items[end], dict) and items[end].get("role") == "user":
        before = markable_at_or_before(end - 1)
        if before is not None:
            found.append(before)
    if sent_end is not None:
        found.append(sent_end)
    return [i for i in dict.fromkeys(found) if prefix_tokens(i) >= minimum]


def _openai_breakpoints(
    out: dict[str, Any], ctx: HintContext, conv_blocked: bool
) -> tuple[dict[str, Any], list[Hint], list[str]]:
    """``prompt_cache_breakpoint`` parts (gpt-5.6+): the end of the static prefix (read by the
    tenant's other conversations); in explicit mode the end of the conversation before the
    volatile block or before the messages it rewrites; where the previous request of the
    conversation wrote when the provider would not look it up otherwise (:func:`_openai_bridges`).
    At most 4 per request, the caller's included, and one fewer in implicit mode, whose own
    breakpoint ends the newest eligible message (the guide: "an implicit breakpoint uses one of
    the four cache write slots")."""
    notes: list[str] = []
    hints: list[Hint] = []
    key = "messages" if ctx.format is WireFormat.OPENAI_CHAT else "input"
    raw = out.get(key)
    items: list[Any] = list(raw) if isinstance(raw, list) else []
    caller_retention = "prompt_cache_retention" in out
    # Explicit mode wins only where the automatic breakpoint at the end of the newest message
    # would write something never read: the volatile block, a tail the conversation rewrites on
    # the next call, or content the policy keeps out. Elsewhere implicit mode caches a few more
    # tokens (the newest message's closing ones) at no extra write, so it stays (issue 22,
    # decision 1: a transformation that cannot be shown to win is not applied).
    opts = out.get("prompt_cache_options")
    caller_mode = opts.get("mode") if isinstance(opts, dict) else None
    if caller_mode is not None:  # the caller chose: its mode is kept, and placement follows it
        explicit = caller_mode == "explicit"
    else:
        explicit = not caller_retention and (
            conv_blocked or ctx.has_volatile or ctx.stable_messages is not None
        )
    limit = MAX_BREAKPOINTS if explicit else MAX_BREAKPOINTS - 1  # implicit mode keeps 1 slot
    budget = limit - _count_openai_breakpoints(items)
    minimum = min_cacheable_tokens(ctx.model, ctx.format, ctx.catalog)
    static_tokens = ctx.prefix_chars // _CHARS_PER_TOKEN
    conv_tokens = static_tokens + sum(ctx.message_chars[: ctx.stable_messages]) // _CHARS_PER_TOKEN
    vol = ctx.volatile_at.item if ctx.volatile_at is not None else None
    n_lead = 0
    while (
        n_lead < len(items)
        and isinstance(items[n_lead], dict)
        and items[n_lead].get("role") in ("system", "developer")
        and n_lead != vol
    ):
        n_lead += 1
    part_type = _OPENAI_TEXT_PART[ctx.format]
    wanted: list[int] = []
    if conv_blocked:
        notes.append("conversation holds content policy keeps out of provider caches: no breakpoint there")
    elif explicit and conv_tokens >= minimum and len(items) > n_lead:
        end = (vol - 1) if vol is not None and vol >= n_lead else len(items) - 1
        if ctx.stable_messages is not None:
            # The conversation rewrites what follows its stable messages on every call: the
            # breakpoint goes where the next request still matches (issue 22, decision 5).
            stable_end = n_lead + ctx.stable_messages - 1
            if vol is not None and vol <= stable_end:
                stable_end += 1
            end = min(end, stable_end)
        for i in range(end, n_lead - 1, -1):
            if isinstance(items[i], dict) and _mark_openai_item(items[i], part_type) is not None:
                wanted.append(i)
                break
    bridges = [] if conv_blocked else _openai_bridges(items, ctx, n_lead, vol, explicit, part_type)
    wanted.extend(i for i in bridges[:1] if i not in wanted)
    if n_lead and static_tokens >= minimum:
        wanted.append(n_lead - 1)
    elif static_tokens < minimum:
        notes.append(
            f"static prefix ~{static_tokens} tokens is below the {minimum}-token minimum of {ctx.model}"
        )
    wanted.extend(i for i in bridges[1:] if i not in wanted)
    if budget <= 0:
        notes.append("4 prompt_cache_breakpoints already placed by the caller: none added")
        wanted = []
    ordered = wanted  # most valuable first: the conversation's end, the bridge, the static end
    wanted = sorted(set(wanted[: max(budget, 0)]))
    for i in wanted:
        marked = _mark_openai_item(items[i], part_type)
        if marked is None:
            continue
        items[i], j = marked
        tokens = static_tokens if i < n_lead else conv_tokens
        if n_lead <= i < n_lead + ctx.resent_messages and i not in ordered[:1]:
            tokens = static_tokens + sum(ctx.message_chars[: max(i - n_lead + 1, 0)]) // _CHARS_PER_TOKEN
        field = "output" if items[i].get("type") == "function_call_output" else "content"
        hints.append(
            _hint(kind="prompt_cache_breakpoint", where=f"$.{key}[{i}].{field}[{j}]", prefix_tokens=tokens)
        )
    if hints:
        out = {**out, key: items}
    if "prompt_cache_options" in out:
        notes.append("prompt_cache_options set by the caller: kept")
    elif caller_retention:
        notes.append("prompt_cache_retention set by the caller: implicit mode kept (OpenAI rejects both)")
    elif explicit:
        # Explicit mode: only our breakpoints write, so the volatile tail is never written
        # (gpt-5.6+ bills writes), and content the policy keeps out is never cached.
        out = {**out, "prompt_cache_options": dict(_BREAKPOINT)}
        hints.append(_hint(kind="prompt_cache_options", where="$.prompt_cache_options"))
    return out, hints, notes


# -- Anthropic and Bedrock -------------------------------------------------------------


def _ttl_static(ctx: HintContext) -> str | None:
    if ctx.policy.entry(EntryType.PROMPT_PREFIX).ttl.default < 3600:
        return None
    # An unknown model, or one the catalog lists without a 1h option (older Claude on
    # Bedrock), gets the default 5m: a ttl it does not accept would be a 400.
    if "1h" not in ttl_options(ctx.model, ctx.format, ctx.catalog):
        return None
    return "1h"


_TTL_RANK = {"5m": 0, "1h": 1}


def marker_ttl(marker: Any) -> str:
    """The TTL label of a ``cache_control`` / ``cachePoint`` object: ``"1h"`` or ``"5m"`` (the
    providers' default when the marker names none)."""
    ttl = marker.get("ttl") if isinstance(marker, dict) else None
    return "1h" if ttl == "1h" else "5m"


def breakpoint_ttl(desired: str, before: Sequence[str], after: Sequence[str]) -> str | None:
    """The TTL of a breakpoint promptcache adds among the caller's own markers, or None when
    no TTL fits there (then none is added: the caller's markers are never changed).

    Anthropic prompt caching (docs.anthropic.com, "Prompt caching", "Mixing different TTLs"):
    cache entries with a longer TTL must appear before those with a shorter one, in rendering
    order (tools → system → messages), or the request is refused. Bedrock's ``cachePoint``
    takes the same ``ttl`` under the same rule. ``before`` / ``after`` are the TTLs of the
    caller's markers rendered before / after this breakpoint (DESIGN.md: the caller's markers
    are sacred, so they bound ours, never the reverse): after a caller's 5m marker ours is 5m;
    before a caller's 1h marker ours is 1h, which bills nothing more (the 1h write is paid up to
    the caller's marker anyway).

    >>> breakpoint_ttl("5m", before=[], after=["1h"])
    '1h'
    >>> breakpoint_ttl("1h", before=["5m"], after=[])
    '5m'
    >>> breakpoint_ttl("5m", before=["5m"], after=["1h"]) is None
    True
    """
    low = max((_TTL_RANK[t] for t in after), default=0)
    high = min((_TTL_RANK[t] for t in before), default=1)
    if low > high:
        return None
    rank = min(max(_TTL_RANK[desired], low), high)
    return "1h" if rank else "5m"


def _control(ttl: str) -> dict[str, str]:
    # 5m is the provider's default: sent without a ttl, as the bodies Anthropic documents.
    return {"type": "ephemeral", "ttl": ttl} if ttl != "5m" else {"type": "ephemeral"}


# A marker's place in Anthropic's rendering order: (section, index, block); tools 0, system 1,
# messages 2, and the top-level ``cache_control`` (automatic caching) after everything.
_Pos = tuple[int, int, int]
_END: _Pos = (3, 0, 0)


def _anthropic_markers(body: dict[str, Any]) -> dict[_Pos, str]:
    """The caller's ``cache_control`` markers of an Anthropic body: place -> TTL label."""
    found: dict[_Pos, str] = {}
    for i, t in enumerate(body.get("tools") or []):
        if isinstance(t, dict) and "cache_control" in t:
            found[(0, i, 0)] = marker_ttl(t["cache_control"])
    system = body.get("system")
    if isinstance(system, list):
        for i, blk in enumerate(system):
            if isinstance(blk, dict) and "cache_control" in blk:
                found[(1, i, 0)] = marker_ttl(blk["cache_control"])
    for mi, m in enumerate(body.get("messages") or []):
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, list):
            for bi, blk in enumerate(c):
                if isinstance(blk, dict) and "cache_control" in blk:
                    found[(2, mi, bi)] = marker_ttl(blk["cache_control"])
    if "cache_control" in body:
        found[_END] = marker_ttl(body["cache_control"])
    return found


def _fit_ttl(
    caller: Mapping[_Pos, str], pos: _Pos, desired: str, section: str, notes: list[str]
) -> str | None:
    """The TTL of our breakpoint at ``pos`` among the caller's markers (None: none goes there)."""
    if pos in caller:  # the caller's marker is already there: it stays as sent
        notes.append(f"{section}: the caller's cache_control is kept as sent")
        return None
    ttl = breakpoint_ttl(
        desired, [t for p, t in caller.items() if p < pos], [t for p, t in caller.items() if p > pos]
    )
    if ttl is None:
        notes.append(f"{section}: the caller's markers put a 1h after a 5m one; no breakpoint added")
    return ttl


_MARKABLE = frozenset({"text", "tool_result", "tool_use", "image", "document"})


def _conversation_target(
    messages: list[Any], volatile: VolatileAt | None, stable: int | None = None
) -> tuple[int, int] | None:
    """(message, block) that closes the stable conversation: the block before the volatile one,
    or the end of the ``stable`` leading messages when the conversation is predicted to rewrite
    what follows them (:attr:`HintContext.stable_messages`).

    The volatile block sits in the last message, after its tool results or before its text
    (:func:`promptcache.wire.place_in_user_turn`); Anthropic caches the prefix up to and
    including the marked block, so the mark goes on the block just before it.
    """
    if not messages:
        return None
    if stable is not None and 0 < stable < len(messages):
        content = messages[stable - 1].get("content")
        return (stable - 1, len(content) - 1 if isinstance(content, list) and content else -1)
    last = messages[-1]
    content = last.get("content")
    if isinstance(content, list) and content:
        if volatile is not None and volatile.item == len(messages) - 1 and volatile.part is not None:
            if volatile.part == len(content) - 1:
                return (len(messages) - 1, len(content) - 2) if len(content) > 1 else None
            if volatile.part == 0:
                if len(messages) < 2:
                    return None
                prev = messages[-2].get("content")
                return (len(messages) - 2, len(prev) - 1 if isinstance(prev, list) else -1)
        return (len(messages) - 1, len(content) - 1)
    return (len(messages) - 1, -1)


@dataclass(frozen=True, slots=True)
class PrefixFigures:
    """What a breakpoint decision needs to know about one request, as plain figures.

    Token counts are estimates (characters / 4). ``free_slots`` is how many breakpoints the
    caller left free; ``static_blocked`` / ``conversation_blocked``: the policy keeps content
    of that part out of provider caches.
    """

    static_tokens: int
    conversation_tokens: int
    minimum: int
    free_slots: int
    static_blocked: bool
    conversation_blocked: bool
    has_messages: bool
    n_system: int
    n_tools: int
    #: The conversation grew by more content blocks than the provider looks back from a
    #: breakpoint since its previous request's end (:data:`ANTHROPIC_LOOKBACK_BLOCKS`).
    bridge: bool = False


#: Content blocks Anthropic looks back from a breakpoint for an earlier cache entry
#: (docs.anthropic.com, "Prompt caching": the automatic prefix check covers about the 20 blocks
#: before each breakpoint). A turn that adds more needs a breakpoint where the last request ended.
ANTHROPIC_LOOKBACK_BLOCKS = 20


def anthropic_breakpoints(f: PrefixFigures) -> tuple[list[str], list[str]]:
    """The sections that get an Anthropic ``cache_control`` breakpoint, most valuable first,
    and notes on those that do not.

    Anthropic prompt caching (docs.anthropic.com, "Prompt caching"): at most 4 breakpoints per
    request, the caller's included (:data:`MAX_BREAKPOINTS`; DESIGN.md: the caller's markers
    are sacred, so only free slots are used); a prefix shorter than the model's minimum
    cacheable length is not cached, so no breakpoint goes below it; the prefix is rendered
    tools → system → messages, so a breakpoint at the end of the conversation also covers
    the static part, and it comes first. Content the policy keeps out of provider caches
    stops placement at and after it (DESIGN.md, Trust).

    A conversation that grew by more blocks than the provider's lookback since its previous
    request also gets a breakpoint where that request ended (``bridge``, issue 22 decision 5),
    or the new tail would not find the entry the previous request wrote.

    >>> anthropic_breakpoints(PrefixFigures(3000, 9000, 1024, 4, False, False, True, 1, 5))
    (['conversation', 'system', 'tools'], [])
    >>> anthropic_breakpoints(PrefixFigures(3000, 9000, 1024, 2, False, False, True, 1, 5, bridge=True))
    (['conversation', 'bridge'], [])
    """
    wanted: list[str] = []
    notes: list[str] = []
    if (
        f.has_messages
        and f.conversation_tokens >= f.minimum
        and not (f.static_blocked or f.conversation_blocked)
    ):
        wanted.append("conversation")
        if f.bridge:
            wanted.append("bridge")
    elif f.conversation_blocked and not f.static_blocked:
        notes.append("conversation holds content policy keeps out of provider caches: no breakpoint there")
    if f.static_blocked:
        notes.append(
            "system prompt or tools hold content policy keeps out of provider caches: no breakpoints"
        )
    elif f.static_tokens >= f.minimum:
        if f.n_system:
            wanted.append("system")
        if f.n_tools:
            wanted.append("tools")
    return wanted[: f.free_slots], notes


def _conversation_block(
    messages: list[Any], volatile: VolatileAt | None, stable: int | None = None
) -> tuple[int, int, list[Any]] | None:
    """(message, block, that message's content as a block list) of the conversation's breakpoint:
    the last markable block up to :func:`_conversation_target`; None when there is none."""
    target = _conversation_target(messages, volatile, stable)
    return None if target is None else _markable_block(messages, *target)


def _markable_block(messages: list[Any], mi: int, bi: int) -> tuple[int, int, list[Any]] | None:
    """(message, block, content as a block list) of message ``mi``'s last markable block at or
    before ``bi`` (-1: its last block); None when it has none."""
    if not 0 <= mi < len(messages):
        return None
    content = messages[mi].get("content")
    if isinstance(content, str):
        content, bi = [{"type": "text", "text": content}], 0
    content = list(content or [])
    bi = len(content) - 1 if bi < 0 else min(bi, len(content) - 1)
    while bi >= 0 and not (isinstance(content[bi], dict) and content[bi].get("type") in _MARKABLE):
        bi -= 1
    return (mi, bi, content) if bi >= 0 else None


def _anthropic(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    hints: list[Hint] = []
    caller = _anthropic_markers(body)
    budget = MAX_BREAKPOINTS - len(caller)
    if budget <= 0:
        return body, [], ["4 cache_control breakpoints already placed by the caller: none added"]
    minimum = min_cacheable_tokens(ctx.model, ctx.format, ctx.catalog)
    static_tokens = ctx.prefix_chars // _CHARS_PER_TOKEN
    blocked = _blocked_from(ctx)
    static_blocked = blocked < ctx.prefix_end
    static_ttl = _ttl_static(ctx) or "5m"
    out = dict(body)
    messages = list(out.get("messages") or [])
    conv_tokens = static_tokens + sum(ctx.message_chars[: ctx.stable_messages]) // _CHARS_PER_TOKEN
    system = out.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    tools = list(out.get("tools") or [])
    conv = _conversation_block(messages, ctx.volatile_at, ctx.stable_messages)
    # Where ours would go, per section. A section whose end the caller's own marker already
    # closes is left to it (sent byte for byte), so the slot goes to another section.
    places: dict[str, _Pos | None] = {
        "tools": (0, len(tools) - 1, 0) if tools else None,
        "system": (1, len(blocks) - 1, 0) if blocks else None,
        "conversation": (2, conv[0], conv[1]) if conv is not None else None,
    }
    closed = {name for name, pos in places.items() if pos is not None and pos in caller}
    wanted, notes = anthropic_breakpoints(
        PrefixFigures(
            static_tokens=static_tokens,
            conversation_tokens=conv_tokens,
            minimum=minimum,
            free_slots=budget,
            static_blocked=static_blocked,
            conversation_blocked=blocked < ctx.n_blocks and not static_blocked,
            has_messages=conv is not None and "conversation" not in closed,
            n_system=0 if "system" in closed else ctx.n_system,
            n_tools=0 if "tools" in closed else ctx.n_tools,
            bridge=_needs_bridge(messages, ctx),
        )
    )
    notes.extend(f"{name}: the caller's cache_control is kept as sent" for name in sorted(closed))
    if not static_blocked and static_tokens < minimum:
        notes.append(
            f"static prefix ~{static_tokens} tokens is below the {minimum}-token minimum of {ctx.model}"
        )
    # Ours take the TTL the provider's order rule allows around the caller's (breakpoint_ttl).
    tools_at, system_at = places["tools"], places["system"]
    if "tools" in wanted and tools_at is not None:
        ttl = _fit_ttl(caller, tools_at, static_ttl, "tools", notes)
        if ttl is not None:
            tools[-1] = {**tools[-1], "cache_control": _control(ttl)}
            out["tools"] = tools
            hints.append(_hint(kind="cache_control", where=f"$.tools[{len(tools) - 1}]", ttl=ttl))
    if "system" in wanted and system_at is not None:
        ttl = _fit_ttl(caller, system_at, static_ttl, "system", notes)
        if ttl is not None:
            blocks[-1] = {**blocks[-1], "cache_control": _control(ttl)}
            out["system"] = blocks
            hints.append(
                _hint(
                    kind="cache_control",
                    where=f"$.system[{len(blocks) - 1}]",
                    ttl=ttl,
                    prefix_tokens=static_tokens,
                )
            )
    marks: list[tuple[str, tuple[int, int, list[Any]], int]] = []  # (section, block, prefix tokens)
    bridge = _markable_block(messages, ctx.resent_messages - 1, -1) if "bridge" in wanted else None
    if bridge is not None:
        tokens = static_tokens + sum(ctx.message_chars[: ctx.resent_messages]) // _CHARS_PER_TOKEN
        marks.append(("bridge", bridge, tokens))
    if "conversation" in wanted and conv is not None:
        marks.append(("conversation", conv, conv_tokens))
    placed: set[tuple[int, int]] = set()
    for section, (mi, bi, content), tokens in marks:
        if (2, mi, bi) in caller or (mi, bi) in placed:
            continue
        placed.add((mi, bi))
        ttl = _fit_ttl(caller, (2, mi, bi), "5m", section, notes)
        if ttl is not None:
            content[bi] = {**content[bi], "cache_control": _control(ttl)}
            messages[mi] = {**messages[mi], "content": content}
            out["messages"] = messages
            hints.append(
                _hint(
                    kind="cache_control",
                    where=f"$.messages[{mi}].content[{bi}]",
                    ttl=ttl,
                    prefix_tokens=tokens,
                )
            )
    return out, hints, notes


def _needs_bridge(messages: list[Any], ctx: HintContext) -> bool:
    """Whether the conversation only appended to its previous request, by more content blocks
    than Anthropic looks back from the new tail (:data:`ANTHROPIC_LOOKBACK_BLOCKS`)."""
    at = ctx.resent_messages
    if ctx.stable_messages is not None or not 0 < at < len(messages):
        return False
    added = 0
    for m in messages[at:]:
        content = m.get("content") if isinstance(m, dict) else None
        added += len(content) if isinstance(content, list) else 1
    return added > ANTHROPIC_LOOKBACK_BLOCKS


def bedrock_cache_points(f: PrefixFigures) -> tuple[list[str], list[str]]:
    """The sections that get a Bedrock Converse ``cachePoint``, in placement order, and notes.

    Bedrock prompt caching (docs.aws.amazon.com, "Prompt caching for faster model inference"):
    at most 4 cache checkpoints per request, the caller's included; a checkpoint below the
    model's minimum tokens per checkpoint is ignored, so none is placed when the static
    prefix is below it; the conversation's point comes first (it covers system and tools).
    Any content the policy keeps out of provider caches stops placement for the whole
    request (DESIGN.md, Trust).

    >>> bedrock_cache_points(PrefixFigures(3000, 9000, 1024, 2, False, False, True, 1, 5))
    (['conversation', 'system'], [])
    """
    if f.static_blocked or f.conversation_blocked:
        return [], ["request holds content policy keeps out of provider caches: no cachePoint"]
    if f.static_tokens < f.minimum:
        return [], [f"static prefix ~{f.static_tokens} tokens is below the {f.minimum}-token minimum"]
    wanted = ["conversation"] if f.has_messages else []
    if f.n_system:
        wanted.append("system")
    if f.n_tools:
        wanted.append("tools")
    return wanted[: f.free_slots], []


def _bedrock(body: dict[str, Any], ctx: HintContext) -> tuple[dict[str, Any], list[Hint], list[str]]:
    hints: list[Hint] = []

    def points(seq: Any) -> int:
        return sum(1 for b in seq or [] if isinstance(b, dict) and "cachePoint" in b)

    # The caller's points in rendering order (tools, system, messages), for the TTL order rule.
    caller: dict[_Pos, str] = {}
    sections = (
        (0, (body.get("toolConfig") or {}).get("tools")),
        (1, body.get("system")),
    )
    for section, seq in sections:
        for i, b in enumerate(seq or []):
            if isinstance(b, dict) and "cachePoint" in b:
                caller[(section, i, 0)] = marker_ttl(b["cachePoint"])
    for mi, m in enumerate(body.get("messages") or []):
        for bi, b in enumerate((m.get("content") if isinstance(m, dict) else None) or []):
            if isinstance(b, dict) and "cachePoint" in b:
                caller[(2, mi, bi)] = marker_ttl(b["cachePoint"])
    budget = MAX_BREAKPOINTS - len(caller)
    if budget <= 0:
        return body, [], ["4 cachePoints already placed by the caller: none added"]
    blocked = _blocked_from(ctx)
    out = dict(body)
    messages = list(out.get("messages") or [])
    target = _conversation_target(messages, ctx.volatile_at, ctx.stable_messages) if messages else None
    static_tokens = ctx.prefix_chars // _CHARS_PER_TOKEN
    wanted, notes = bedrock_cache_points(
        PrefixFigures(
            static_tokens=static_tokens,
            conversation_tokens=static_tokens
            + sum(ctx.message_chars[: ctx.stable_messages]) // _CHARS_PER_TOKEN,
            minimum=min_cacheable_tokens(ctx.model, ctx.format, ctx.catalog),
            free_slots=budget,
            static_blocked=blocked < ctx.prefix_end,
            conversation_blocked=blocked < ctx.n_blocks,
            has_messages=target is not None,
            # A section the caller already gave a point keeps the caller's.
            n_system=ctx.n_system if not points(out.get("system")) else 0,
            n_tools=ctx.n_tools if not points((out.get("toolConfig") or {}).get("tools")) else 0,
        )
    )
    if not wanted:
        return body, [], notes

    def point(ttl: str) -> dict[str, Any]:
        return {"cachePoint": {"type": "default", "ttl": ttl} if ttl != "5m" else {"type": "default"}}

    if "conversation" in wanted and target is not None:
        mi, bi = target
        # Inserted after block bi: it sits between bi and bi + 1 in rendering order.
        ttl = _fit_ttl(caller, (2, mi, bi), "5m", "conversation", notes)
        if ttl is not None:
            msg = dict(messages[mi])
            content = list(msg.get("content") or [])
            content.insert(bi + 1 if bi >= 0 else len(content), point(ttl))
            msg["content"] = content
            messages[mi] = msg
            out["messages"] = messages
            hints.append(_hint(kind="cachePoint", where=f"$.messages[{mi}].content[{bi + 1}]", ttl=ttl))
    if "system" in wanted:
        n = len(out["system"])
        ttl = _fit_ttl(caller, (1, n - 1, 1), "5m", "system", notes)
        if ttl is not None:
            out["system"] = [*out["system"], point(ttl)]
            hints.append(_hint(kind="cachePoint", where=f"$.system[{n}]", ttl=ttl))
    tc = out.get("toolConfig")
    if "tools" in wanted and isinstance(tc, dict):
        n = len(tc["tools"])
        ttl = _fit_ttl(caller, (0, n - 1, 1), "5m", "tools", notes)
        if ttl is not None:
            out["toolConfig"] = {**tc, "tools": [*tc["tools"], point(ttl)]}
            hints.append(_hint(kind="cachePoint", where=f"$.toolConfig.tools[{n}]", ttl=ttl))
    return out, hints, notes
