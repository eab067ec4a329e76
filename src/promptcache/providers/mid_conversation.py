"""Anthropic mid-conversation changes: a conversation's tool set or system prompt changes without
rewriting the start of the prompt.

platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages (read
2026-12-07): editing the top-level ``system`` (or ``tools``) changes the very start of the prompt
and invalidates the cache for everything after it; instead, a ``{"role": "system"}`` message is
appended where the change becomes relevant, and the cached prefix stays the same. Mid-conversation
system messages need no beta header. A tool change is a ``tool_addition`` / ``tool_removal``
block in such a message that names a tool declared in ``tools`` (anthropic SDK 0.125:
``BetaRequestToolAdditionBlockParam``, ``BetaRequestToolRemovalBlockParam``,
``BetaToolChangeToolReferenceParam``; beta ``mid-conversation-tool-changes-2026-07-01``). A tool
added later is declared with ``defer_loading: true``: a deferred tool is not part of the rendered
prompt, so declaring it keeps the cached prefix (``BetaToolParam.defer_loading``: "tool will not be
included in initial system prompt").

So, per conversation (:class:`ConversationState`), promptcache keeps the start of the prompt as
the conversation first sent it and, on every later request:

* **tools** (``tools=True``): a tool the app added is appended to ``tools`` with
  ``defer_loading: true`` and offered by a ``tool_addition`` block; a tool the app dropped stays
  in ``tools`` (it is part of the cached prefix) and is withdrawn by a ``tool_removal`` block;
* **system** (``system=True``): text the app appended to its system prompt is sent as a text
  block of a system message instead (the top-level ``system`` stays as first sent);
* each change stays where it happened (after the messages the conversation had then), so later
  requests resend the same prefix;
* anything else (a tool whose definition changed, a system prompt edited rather than appended to,
  a rewritten history) cannot be expressed this way: the conversation starts over with the app's
  request (a full miss, as without this option), and a note says so.

Only models the catalog lists with the ``mid_conversation_tools`` / ``mid_conversation_system``
capability get this (:data:`promptcache.catalog.Capability`); the others keep today's behaviour.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "TOOL_CHANGES_BETA",
    "ConversationState",
    "Conversations",
    "apply_changes",
]

TOOL_CHANGES_BETA = "mid-conversation-tool-changes-2026-07-01"
"""The ``anthropic-beta`` value a request with tool changes carries (anthropic SDK 0.125)."""

_MARKER = "cache_control"


def _unmarked(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != _MARKER}


def _definition(tool: Mapping[str, Any]) -> bytes:
    # What the tool is, without a breakpoint marker on it (a marker moves, the tool does not).
    return orjson.dumps(_unmarked(tool), option=orjson.OPT_SORT_KEYS)


def _system_blocks(system: Any) -> list[dict[str, Any]] | None:
    """The system prompt as text blocks without markers; None if it is not all text."""
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}]
    if isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return [_unmarked(b) for b in system]
    return None


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(str(b.get("text", "")) for b in blocks)


@dataclass(slots=True)
class ConversationState:
    """One conversation's start of the prompt as promptcache sends it, and its changes since.

    ``tools``: the tools block as first sent (rendered, cached); ``deferred``: tools added later,
    declared with ``defer_loading``; ``active``: the tools offered now. ``system``: the system
    prompt as first sent; ``system_seen``: the app's system text as of its last request.
    ``changes``: (messages before it, content block), in order.
    """

    tools: list[dict[str, Any]] | None
    definitions: dict[str, bytes]
    system: list[dict[str, Any]] | None
    system_seen: str
    deferred: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)
    changes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def start(cls, body: Mapping[str, Any]) -> ConversationState:
        """The state of a conversation whose first request (as sent) is ``body``."""
        base = _tools_now(body)
        system = _system_blocks(body.get("system"))
        return cls(
            tools=base,
            definitions={str(t["name"]): _definition(t) for t in base or []},
            system=system,
            system_seen=_text(system) if system is not None else "",
            active=[str(t["name"]) for t in base or []],
        )


class Conversations:
    """The :class:`ConversationState` of each conversation, keyed by (tenant, conversation id);
    at most ``limit`` conversations (the least recently used go first). Thread-safe through
    :attr:`lock`."""

    def __init__(self, limit: int = 4096) -> None:
        self._d: OrderedDict[tuple[str, bytes], ConversationState] = OrderedDict()
        self._limit = max(1, limit)
        self.lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> ConversationState | None:
        """The state of conversation ``key`` (call under :attr:`lock`)."""
        found = self._d.get(key)
        if found is not None:
            self._d.move_to_end(key)
        return found

    def put(self, key: tuple[str, bytes], state: ConversationState) -> None:
        """Keep ``state`` for conversation ``key`` (call under :attr:`lock`)."""
        self._d[key] = state
        self._d.move_to_end(key)
        while len(self._d) > self._limit:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def _named(tools: Any) -> list[dict[str, Any]] | None:
    if not isinstance(tools, list) or not tools:
        return None
    if not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools):
        return None  # server tools without a name, or a shape this does not know: left alone
    return tools


def _tools_now(body: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    tools = _named(body.get("tools"))
    return [_unmarked(t) for t in tools] if tools is not None else None


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, "tool": {"type": "tool_reference", "name": name}}


def apply_changes(
    body: dict[str, Any], state: ConversationState | None, *, tools: bool, system: bool
) -> tuple[dict[str, Any], ConversationState | None, list[str]]:
    """``body`` with the conversation's changes expressed as the docs say, the state to keep for
    the conversation, and notes.

    ``body`` is the request as it would be sent (hints placed); ``state`` the conversation's (None:
    its first request, or forgotten); ``tools`` / ``system``: which changes the model takes.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body, None, []
    if any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        return body, None, ["the caller sends system messages of its own: left to it"]
    if state is None:
        return body, ConversationState.start(body), []
    n = len(messages)
    if any(at > n for at, _ in state.changes):
        return (
            body,
            ConversationState.start(body),
            ["conversation history rewritten: start of the prompt resent"],
        )
    notes: list[str] = []
    new: list[dict[str, Any]] = []
    if tools:
        found = _tool_changes(body, state, new, notes)
        if found is not None:
            return body, ConversationState.start(body), [found]
    elif _tools_now(body) != state.tools:
        return body, ConversationState.start(body), []
    if system:
        found = _system_change(body, state, new, notes)
        if found is not None:
            return body, ConversationState.start(body), [found]
    elif _system_blocks(body.get("system")) != state.system:
        return body, ConversationState.start(body), []
    state.changes.extend((n, block) for block in new)
    if not state.changes:
        return body, state, notes
    return _with_changes(body, state, messages), state, notes


def _tool_changes(
    body: dict[str, Any], state: ConversationState, new: list[dict[str, Any]], notes: list[str]
) -> str | None:
    """Record the tools added and removed since the last request; a reason to start over, or None."""
    tools = _named(body.get("tools"))
    if tools is None or state.tools is None:
        if (tools is None) != (state.tools is None):
            return "tools block added or dropped: start of the prompt resent"
        return None
    now = {str(t["name"]): t for t in tools}
    for name, tool in now.items():
        known = state.definitions.get(name)
        if known is not None and known != _definition(tool):
            return f"tool {name!r} changed its definition: tools block resent"
    added = [name for name in now if name not in state.active]
    removed = [name for name in state.active if name not in now]
    for name in added:
        if name not in state.definitions:
            state.deferred[name] = _unmarked(now[name])
            state.definitions[name] = _definition(now[name])
        new.append(_ref("tool_addition", name))
        notes.append(f"tool {name!r} added mid-conversation (tool_addition)")
    for name in removed:
        new.append(_ref("tool_removal", name))
        notes.append(f"tool {name!r} removed mid-conversation (tool_removal)")
    state.active = [name for name in state.active if name not in removed] + added
    return None


def _system_change(
    body: dict[str, Any], state: ConversationState, new: list[dict[str, Any]], notes: list[str]
) -> str | None:
    """Record text appended to the system prompt since the last request; a reason to start over,
    or None."""
    blocks = _system_blocks(body.get("system"))
    if blocks is None or state.system is None:
        return None if blocks == state.system else "system prompt not plain text: start of the prompt resent"
    text = _text(blocks)
    if text == state.system_seen:
        return None
    if not text.startswith(state.system_seen):
        return "system prompt edited, not appended to: start of the prompt resent"
    added = text[len(state.system_seen) :].strip("\n")
    state.system_seen = text
    if added:
        new.append({"type": "text", "text": added})
        notes.append("text appended to the system prompt sent as a mid-conversation system message")
    return None


def _with_changes(body: dict[str, Any], state: ConversationState, messages: list[Any]) -> dict[str, Any]:
    out = dict(body)
    tools = _named(body.get("tools"))
    if state.tools is not None and tools is not None:
        sent = [dict(t) for t in state.tools]
        marker = tools[-1].get(_MARKER)
        if marker is not None and sent:
            # The breakpoint the hints put at the end of the tools goes on the last tool rendered.
            sent[-1][_MARKER] = marker
        out["tools"] = sent + [{**t, "defer_loading": True} for t in state.deferred.values()]
    if state.system is not None and _text(state.system) != _text(_system_blocks(body.get("system")) or []):
        system = [dict(b) for b in state.system]
        sent_system = body.get("system")
        marker = sent_system[-1].get(_MARKER) if isinstance(sent_system, list) and sent_system else None
        if marker is not None and system:
            system[-1][_MARKER] = marker
        out["system"] = system
    by_place: dict[int, list[dict[str, Any]]] = {}
    for at, block in state.changes:
        by_place.setdefault(at, []).append(block)
    conv: list[Any] = []
    for i in range(len(messages) + 1):
        blocks = by_place.get(i)
        if blocks:
            conv.append({"role": "system", "content": blocks})
        if i < len(messages):
            conv.append(messages[i])
    out["messages"] = conv
    return out
