"""Static-first layout with trust sections.

Order, first to last::

    static      system → developer → tool schemas (by name) → examples → static context
    untrusted_static   static retrieved documents / tool output (labelled, never merged)
    session     session context, memory
    untrusted   retrieved documents and other untrusted session content
    history     the conversation, in its original order (never reordered)
    volatile    blocks that change on every call
    current     the current user turn (the last user block)

Untrusted blocks keep their own section: no layout gain justifies putting a
retrieved document or a tool result next to, or inside, the instructions.
The arrangement is deterministic: the same blocks always give the same order.

This module is the layout step of both pipelines (DESIGN.md step 1):

* :func:`section_of` is the rule, one block at a time;
* :func:`tool_order` orders a tool list (by name, unless the policy pins it);
* :func:`arrange` orders loose blocks (``PromptCache.plan``);
* :func:`wire_sections` labels a provider request the engine rewrites. A wire format
  fixes where system text, tools and messages go, so there the layout only sorts the
  tools, keeps the history in place and puts the volatile block after the history.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptcache.blocks import Block, BlockKind, Stability, Trust
from promptcache.plan import Move

SECTIONS = ("static", "untrusted_static", "session", "untrusted", "history", "volatile", "current")
_RANK = {s: i for i, s in enumerate(SECTIONS)}
_STATIC_KIND_RANK = {
    BlockKind.SYSTEM: 0,
    BlockKind.DEVELOPER: 1,
    BlockKind.TOOL_SCHEMA: 2,
    BlockKind.EXAMPLE: 3,
    BlockKind.CONTEXT: 4,
    BlockKind.MEMORY: 5,
    BlockKind.RETRIEVAL: 6,
}
_CONVERSATION = frozenset({BlockKind.HISTORY, BlockKind.TOOL_RESULT, BlockKind.USER})


def section_of(block: Block, *, is_current: bool) -> str:
    """The layout section of ``block``."""
    if is_current:
        return "current"
    if block.kind in _CONVERSATION:
        return "history"
    if block.stability is Stability.VOLATILE:
        return "volatile"
    untrusted = block.trust is Trust.UNTRUSTED
    if block.stability is Stability.STATIC:
        return "untrusted_static" if untrusted else "static"
    return "untrusted" if untrusted else "session"


def tool_order(names: Sequence[str], pin: bool) -> list[int]:
    """Layout order of a tool list: sorted by name (DESIGN.md step 1: tools are static, and a
    reshuffled list must give the same prefix) unless the policy pins the caller's order
    (``layout.pin_tool_order``). The sort is stable: equal names keep their order.

    >>> tool_order(["search", "book", "cancel"], pin=False)
    [1, 2, 0]
    """
    order = list(range(len(names)))
    if not pin:
        order.sort(key=lambda i: names[i])
    return order


def wire_sections(blocks: Sequence[Block], current_from: int) -> list[str]:
    """The section of each block of a wire request, given in sent order: system texts and
    tools, the history, the volatile block (if any), then the current turn from index
    ``current_from`` on.

    The same rule as :func:`arrange` (:func:`section_of`), without the reordering: the
    engine already sent the volatile block after the history (DESIGN.md step 2), where it
    breaks neither the cached prefix nor the cached conversation.
    """
    return [section_of(b, is_current=i >= current_from) for i, b in enumerate(blocks)]


def arrange(
    blocks: Sequence[Block], *, pin_tool_order: bool = False
) -> tuple[list[tuple[Block, str]], list[Move]]:
    """Order ``blocks`` static-first; return ``(block, section)`` pairs and the moves made."""
    last_user = max((i for i, b in enumerate(blocks) if b.kind is BlockKind.USER), default=-1)

    def sort_key(i: int) -> tuple[int, int, int]:
        b = blocks[i]
        sec = section_of(b, is_current=i == last_user)
        if sec in ("history", "current"):
            return (_RANK[sec], 0, i)  # conversation order is never changed
        return (_RANK[sec], _STATIC_KIND_RANK.get(b.kind, 9), tool_rank.get(i, i))

    tools = [i for i, b in enumerate(blocks) if b.kind is BlockKind.TOOL_SCHEMA]
    by_name = tool_order([blocks[i].name or "" for i in tools], pin_tool_order)
    # Tools take the positions tool_order gives them among themselves, from the first
    # tool's index on, so the rest of the section keeps its relative order.
    first = tools[0] if tools else 0
    tool_rank = {tools[j]: first + k for k, j in enumerate(by_name)}
    order = sorted(range(len(blocks)), key=sort_key)
    out = [(blocks[i], section_of(blocks[i], is_current=i == last_user)) for i in order]
    moves: list[Move] = []
    for new, old in enumerate(order):
        if new != old:
            b, sec = out[new]
            reason = {
                "static": "static-first: stable instructions and schemas lead the prompt",
                "untrusted_static": "static untrusted content: its own section after the instructions",
                "session": "session context after the static prefix",
                "untrusted": "untrusted content kept in its own section",
                "volatile": "volatile block after the history so it does not break the prefix",
                "current": "current user turn last",
                "history": "history keeps its order; other blocks moved around it",
            }[sec]
            if b.kind is BlockKind.TOOL_SCHEMA and not pin_tool_order:
                reason = "tools sorted by name"
            moves.append(Move(block=b.label, from_index=old, to_index=new, reason=reason))
    return out, moves
