"""``PromptCache.plan()``: the pipeline over loose :class:`~promptcache.blocks.Block` objects.

The wire path (:meth:`PromptCache.prepare_request`) splits a provider body into parts; this is
the same decisions for blocks a caller assembled itself: the layout rules applied with
:func:`promptcache.layout.arrange` (static first, the current turn last), system texts through
the analyser's memo (canonical form, relocation), every other block canonicalized and scanned,
the volatile block placed before the current turn, and the keys derived under ``contract``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from promptcache.blocks import Block, BlockKind, Stability, Trust
from promptcache.canonical import Fragment, canonical_json, canonical_text, digest
from promptcache.detect import scan_sensitive
from promptcache.keys import KeyContract, chain_hash, derive_key
from promptcache.layout import arrange
from promptcache.pipeline.analyse import Analyser
from promptcache.pipeline.assemble import volatile_block, volatile_text
from promptcache.pipeline.bounds import unrelocated_decisions
from promptcache.pipeline.learning import family_id
from promptcache.plan import Plan


def plan_blocks(
    blocks: Sequence[Block],
    *,
    analyser: Analyser,
    relocates: Callable[[BlockKind], bool],
    pin_tool_order: bool,
    contract: KeyContract,
    model: str,
    tenant: str,
    mode: str,
    on_unrelocated: Callable[[list[tuple[str, int]]], None] | None = None,
) -> Plan:
    """The :class:`Plan` of ``blocks`` laid out static-first, canonicalized and keyed.

    A text above the analyser's relocation bound is kept in place; the plan's decisions say so,
    and ``on_unrelocated`` is told which blocks (labels and counts of their values)."""
    arranged, moves = arrange(blocks, pin_tool_order=pin_tool_order)
    out: list[Block] = []
    digests: list[str] = []
    sections: list[str] = []
    frags: list[Fragment] = []
    classes: dict[int, list[str]] = {}
    over: list[tuple[str, int]] = []

    def add_volatile() -> None:
        block, dg = volatile_block(volatile_text(frags))
        out.append(block)
        digests.append(dg)
        sections.append("volatile")

    for b, section in arranged:
        if section == "current" and frags and "volatile" not in sections:
            add_volatile()
        content: Any = b.content
        found: tuple[str, ...] = b.data_classes
        # Untrusted static content (a fixed document) is data: its values are
        # never relocated into the volatile block, which is trusted.
        if b.stability is Stability.STATIC and b.trust is Trust.TRUSTED and isinstance(content, str):
            t = analyser.text(content, b.kind, b.label, relocates(b.kind))
            frags.extend(t.fragments)
            if t.unrelocated:
                over.append((b.label, t.unrelocated))
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
        add_volatile()
    prefix_end = sum(1 for s in sections if s == "static")
    tool_names = [b.name or "" for b in out if b.kind is BlockKind.TOOL_SCHEMA]
    hist_end = sum(1 for s in sections if s in ("static", "session", "untrusted", "history"))
    plan = Plan(
        model=model,
        tenant=tenant,
        family=family_id("blocks", model, tenant, tool_names, 0),
        blocks=out,
        digests=digests,
        sections=sections,
        prefix_end=prefix_end,
        prefix_key=derive_key(contract, "prompt_prefix", chain_hash(digests[:prefix_end])),
        conversation_key=derive_key(contract, "conversation", chain_hash(digests[:hist_end])),
        fragments=frags,
        moves=moves,
        data_classes=classes,
        mode=mode,
        decisions=unrelocated_decisions(over, analyser.max_values),
    )
    if over and on_unrelocated is not None:
        on_unrelocated(over)
    plan._contract = contract
    return plan
