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


def arrange(
    blocks: Sequence[Block], *, pin_tool_order: bool = False
) -> tuple[list[tuple[Block, str]], list[Move]]:
    """Order ``blocks`` static-first; return ``(block, section)`` pairs and the moves made."""
    last_user = max((i for i, b in enumerate(blocks) if b.kind is BlockKind.USER), default=-1)

    def sort_key(i: int) -> tuple[int, int, str, int]:
        b = blocks[i]
        sec = section_of(b, is_current=i == last_user)
        if sec in ("history", "current"):
            return (_RANK[sec], 0, "", i)  # conversation order is never changed
        kind_rank = _STATIC_KIND_RANK.get(b.kind, 9)
        name = b.name or "" if b.kind is BlockKind.TOOL_SCHEMA and not pin_tool_order else ""
        return (_RANK[sec], kind_rank, name, i)

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
