"""Why a request's cacheable prefix differs from the last one of its family.

The engine keeps, per prefix family, a :class:`Snapshot` of the last request:
raw and canonical fingerprints of each system block and tool, and the
history's digests. Comparing two snapshots names what changed and how (key
order, tool order, a volatile value, new content) and whether promptcache
neutralized it (canonical form, tool sorting, relocation) or the prefix
really changed.

Snapshots hold checksums and line numbers only, never prompt text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from promptcache.figures import ProviderMissReason

_FIRST = "first request of this prefix family: nothing cached yet"
_UNCHANGED = "cacheable prefix unchanged since the last request"

Cause = Literal[
    "first_request",
    "key_order",
    "tool_order",
    "whitespace_or_unicode",
    "volatile_value",
    "learned_volatile",
    "content",
    "added",
    "removed",
    "history_rewritten",
]


class Change(BaseModel):
    """One difference between this request and the last of its family."""

    model_config = ConfigDict(frozen=True)

    block: str
    cause: Cause
    detail: str
    line: int | None = None
    neutralized: bool = False

    def __str__(self) -> str:
        where = f" at line {self.line}" if self.line else ""
        fix = " (neutralized by promptcache)" if self.neutralized else ""
        return f"{self.block}{where}: {self.detail}{fix}"


class Explanation(BaseModel):
    """What changed in the cacheable prefix since the family's last request."""

    model_config = ConfigDict(frozen=True)

    family: str
    first_in_family: bool
    prefix_unchanged: bool
    changes: list[Change]
    #: The provider's own verdict on this request, when it gave one (Anthropic cache
    #: diagnostics, ``PromptCache(cache_diagnostics=True)``), beside promptcache's ``changes``.
    provider_reason: ProviderMissReason | None = None
    provider_missed_tokens: int | None = None

    @property
    def misses(self) -> list[Change]:
        """Changes promptcache could not neutralize: these break the provider's prefix."""
        return [c for c in self.changes if not c.neutralized]

    def __str__(self) -> str:
        return self._own() + provider_line(self.provider_reason, self.provider_missed_tokens)

    def _own(self) -> str:
        if self.first_in_family:
            return _FIRST
        if not self.changes:
            return _UNCHANGED
        head = (
            "cacheable prefix unchanged (promptcache absorbed the differences)"
            if self.prefix_unchanged
            else "cacheable prefix changed"
        )
        return head + ":\n" + "\n".join(f"  - {c}" for c in self.changes)


def provider_line(reason: ProviderMissReason | None, missed_tokens: int | None) -> str:
    """The line an explanation ends with when the provider gave its own verdict ("" if not).

    >>> provider_line(ProviderMissReason.TOOLS_CHANGED, 4100).strip()
    '- provider: tools_changed (~4100 tokens not read from cache)'
    """
    if reason is None:
        return ""
    n = f" (~{missed_tokens} tokens not read from cache)" if missed_tokens else ""
    return f"\n  - provider: {reason.value}{n}"


@dataclass(slots=True)
class SlotPrint:
    """Fingerprints of one system block."""

    label: str
    raw: int
    canonical: str
    lines: list[int]  # checksums of the stable lines
    line_numbers: list[int]  # the caller's line number of each stable line
    volatile: list[tuple[str, int]]  # (kind, line) of relocated values
    #: Detected volatile values left in place: more than the relocation bound
    #: (:data:`promptcache.pipeline.analyse.MAX_RELOCATED_VALUES`); 0 when relocated as usual.
    unrelocated: int = 0


@dataclass(slots=True)
class Snapshot:
    """Fingerprints of one request, enough to explain the next one."""

    system: list[SlotPrint] = field(default_factory=list)
    tool_order: list[str] = field(default_factory=list)
    tool_raw: dict[str, int] = field(default_factory=dict)
    tool_canonical: dict[str, str] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    #: Every message sent, history and current turn, by its digest as part of a history: what
    #: the conversation's next request is compared with (:func:`promptcache.pipeline.learning.
    #: conversation_change`).
    messages: list[str] = field(default_factory=list)
    tools_canonical: bool = False  # tools were sent as canonical JSON (not each as the caller wrote it)
    #: Tools whose volatile values stayed in place, by name, with their count (above the
    #: relocation bound, :data:`promptcache.pipeline.analyse.MAX_RELOCATED_VALUES`).
    tool_unrelocated: dict[str, int] = field(default_factory=dict)


def unrelocated_note(n: int) -> str:
    """What an explanation adds to a changed block whose ``n`` volatile values were not relocated.

    >>> unrelocated_note(25000)
    '; its 25,000 volatile values stay in place (more than PromptCache(max_relocated_values=...))'
    """
    return f"; its {n:,} volatile values stay in place (more than PromptCache(max_relocated_values=...))"


def describe(family: str, prev: Snapshot | None, cur: Snapshot | None) -> str:
    """``str(compare(family, prev, cur))`` (``cur`` None: no snapshot, a first request), without
    building the explanation in the usual case: nothing changed since the family's last request.

    This runs on every model call an integration observes; identity checks come first because
    unchanged tool fingerprints come out of the engine's memo as the same objects.
    """
    if cur is None or prev is None:
        return _FIRST
    if prev is cur or _nothing_changed(prev, cur):  # the same snapshot
        return _UNCHANGED
    return str(compare(family, prev, cur))


def _nothing_changed(prev: Snapshot, cur: Snapshot) -> bool:
    """Whether :func:`compare` would list no change at all (False: let it say what changed)."""
    if prev.system is not cur.system:
        if len(prev.system) != len(cur.system):
            return False
        for p, c in zip(prev.system, cur.system, strict=True):
            if p is not c and p.raw != c.raw:
                return False
    if cur.tools_canonical and not prev.tools_canonical:
        return False
    if prev.tool_order is not cur.tool_order and prev.tool_order != cur.tool_order:
        return False
    if prev.tool_raw is not cur.tool_raw and prev.tool_raw != cur.tool_raw:
        return False
    n = min(len(prev.history), len(cur.history))
    return prev.history[:n] == cur.history[:n]


def compare(family: str, prev: Snapshot | None, cur: Snapshot) -> Explanation:
    """Explain ``cur`` against ``prev`` (``None``: first request of the family)."""
    if prev is None:
        return Explanation(family=family, first_in_family=True, prefix_unchanged=False, changes=[])
    changes: list[Change] = []
    prefix_same = True
    for i in range(max(len(prev.system), len(cur.system))):
        if i >= len(cur.system):
            changes.append(Change(block=prev.system[i].label, cause="removed", detail="block removed"))
            prefix_same = False
            continue
        c = cur.system[i]
        if i >= len(prev.system):
            changes.append(Change(block=c.label, cause="added", detail="block added"))
            prefix_same = False
            continue
        p = prev.system[i]
        if p is c or p.raw == c.raw:
            continue
        if p.canonical != c.canonical:
            prefix_same = False
            if p.lines == c.lines:
                # Only a detected value differs: it was kept in place while it
                # held still, and moves out of the prefix from this request on.
                changes.append(
                    Change(
                        block=c.label,
                        cause="volatile_value",
                        detail="a detected value changed for the first time; it moves after the "
                        "cached prefix from now on",
                        line=c.volatile[0][1] if c.volatile else None,
                    )
                )
            else:
                line = _first_diff(p.lines, c.lines, c.line_numbers)
                detail = "new content" + (unrelocated_note(c.unrelocated) if c.unrelocated else "")
                changes.append(Change(block=c.label, cause="content", detail=detail, line=line))
        # On the request where a value first moves, the move is the change itself,
        # not something absorbed: only later requests list it as neutralized.
        first_move = bool(c.volatile) and not p.volatile and p.canonical != c.canonical
        moved = [] if first_move else [v for v in c.volatile if v not in p.volatile] or c.volatile
        for kind, line in moved:
            cause: Cause = "learned_volatile" if kind.startswith("learned") else "volatile_value"
            changes.append(
                Change(
                    block=c.label,
                    cause=cause,
                    detail=f"{kind.replace('_', ' ')} relocated after the cached prefix",
                    line=line,
                    neutralized=True,
                )
            )
        if p.canonical == c.canonical and not c.volatile:
            changes.append(
                Change(
                    block=c.label,
                    cause="whitespace_or_unicode",
                    detail="newline style or Unicode form",
                    neutralized=True,
                )
            )
    switched = cur.tools_canonical and not prev.tools_canonical
    if switched and sorted(prev.tool_order) == sorted(cur.tool_order):
        # Tools go out in canonical order from the first call; the first time a tool's bytes
        # change in place, promptcache starts sending them as canonical JSON: this request's
        # prefix changes, later ones will not.
        prefix_same = False
        edited = sorted(n for n, d in cur.tool_canonical.items() if prev.tool_canonical.get(n, d) != d)
        changes.append(
            Change(
                block="tools",
                cause="content" if edited else "key_order",
                detail=(f"tools {edited} changed" if edited else "a tool's key order changed")
                + " for the first time; tools are sent as canonical JSON from now on",
            )
        )
        if prev.tool_order != cur.tool_order:
            changes.append(Change(block="tools", cause="tool_order", detail="tool order", neutralized=True))
    elif prev.tool_order != cur.tool_order:
        if sorted(prev.tool_order) == sorted(cur.tool_order):
            changes.append(Change(block="tools", cause="tool_order", detail="tool order", neutralized=True))
        else:
            added = sorted(set(cur.tool_order) - set(prev.tool_order))
            removed = sorted(set(prev.tool_order) - set(cur.tool_order))
            if added:
                changes.append(Change(block="tools", cause="added", detail=f"tools added: {added}"))
            if removed:
                changes.append(Change(block="tools", cause="removed", detail=f"tools removed: {removed}"))
            prefix_same = False
    # One C-level comparison first: unchanged tools (the usual case) need no loop.
    same_tools = switched or prev.tool_raw == cur.tool_raw
    for name, raw in () if same_tools else cur.tool_raw.items():
        if name not in prev.tool_raw or prev.tool_raw[name] == raw:
            continue
        if prev.tool_canonical.get(name) == cur.tool_canonical.get(name):
            changes.append(
                Change(block=f"tool {name!r}", cause="key_order", detail="key order", neutralized=True)
            )
        else:
            prefix_same = False
            n = cur.tool_unrelocated.get(name, 0)
            detail = "schema changed" + (unrelocated_note(n) if n else "")
            changes.append(Change(block=f"tool {name!r}", cause="content", detail=detail))
    n = min(len(prev.history), len(cur.history))
    # One C-level comparison first: an appended conversation (the usual case) needs no loop.
    same_history = prev.history[:n] == cur.history[:n]
    for j in range(0 if same_history else n):
        if prev.history[j] != cur.history[j]:
            prefix_same = False
            changes.append(
                Change(
                    block=f"history message {j}",
                    cause="history_rewritten",
                    detail="an earlier message changed (the conversation was rewritten, not appended)",
                )
            )
            break
    return _explanation(family, False, prefix_same, changes)


def _explanation(family: str, first: bool, unchanged: bool, changes: list[Change]) -> Explanation:
    values = {"family": family, "first_in_family": first, "prefix_unchanged": unchanged, "changes": changes}
    return Explanation.model_validate(values)


def _first_diff(a: list[int], b: list[int], numbers: list[int]) -> int:
    """The caller's line number of the first stable line that differs."""
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if i < len(numbers):
        return numbers[i]
    return (numbers[-1] if numbers else 0) + 1
