"""Anthropic mid-conversation tool changes: a conversation's tool set grows or shrinks without
rewriting the cached tools block.

platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages (read
2026-12-07): instead of editing the top-level fields (which changes the very start of the prompt
and costs a full cache miss), a ``{"role": "system"}`` message is appended where the change
happens. A tool change is a ``tool_addition`` / ``tool_removal`` block in such a message that
names a tool declared in ``tools`` (anthropic SDK 0.125: ``BetaRequestToolAdditionBlockParam``,
``BetaRequestToolRemovalBlockParam``, ``BetaToolChangeToolReferenceParam``; beta
``mid-conversation-tool-changes-2026-07-01``). A tool added later is declared with
``defer_loading: true``: a deferred tool is not part of the rendered prompt, so declaring it
keeps the cached prefix (``BetaToolParam.defer_loading``: "tool will not be included in initial
system prompt").

So, per conversation (:class:`ToolState`), promptcache keeps the tools block as the conversation
first sent it and, on every later request:

* a tool the app added: appended to ``tools`` with ``defer_loading: true`` and offered by a
  ``tool_addition`` block;
* a tool the app dropped: kept in ``tools`` (it is part of the cached prefix) and withdrawn by a
  ``tool_removal`` block;
* each change stays where it happened (after the messages the conversation had then), so later
  requests resend the same prefix;
* a tool whose definition changed cannot be expressed this way: the conversation starts over
  with the app's tools (a full miss, as without this option), and says so.

Only models the catalog lists with the ``mid_conversation_tools`` capability get this
(:data:`promptcache.catalog.Capability`); the others keep today's behaviour.
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
    "ConversationTools",
    "ToolState",
    "apply_tool_changes",
]

TOOL_CHANGES_BETA = "mid-conversation-tool-changes-2026-07-01"
"""The ``anthropic-beta`` value a request with tool changes carries (anthropic SDK 0.125)."""

_MARKER = "cache_control"


def _definition(tool: Mapping[str, Any]) -> bytes:
    # What the tool is, without a breakpoint marker on it (a marker moves, the tool does not).
    return orjson.dumps({k: v for k, v in tool.items() if k != _MARKER}, option=orjson.OPT_SORT_KEYS)


@dataclass(slots=True)
class ToolState:
    """One conversation's tools as promptcache sends them.

    ``base``: the tools block as first sent (rendered, cached); ``deferred``: tools added later,
    declared with ``defer_loading``; ``changes``: (messages before it, ``tool_addition`` or
    ``tool_removal``, tool name), in order; ``active``: the tools offered now.
    """

    base: list[dict[str, Any]]
    definitions: dict[str, bytes]
    deferred: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[tuple[int, str, str]] = field(default_factory=list)
    active: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, tools: list[dict[str, Any]]) -> ToolState:
        """The state of a conversation whose first request sends ``tools``."""
        base = [{k: v for k, v in t.items() if k != _MARKER} for t in tools]
        return cls(
            base=base,
            definitions={str(t["name"]): _definition(t) for t in base},
            active=[str(t["name"]) for t in base],
        )


class ConversationTools:
    """The :class:`ToolState` of each conversation, keyed by (tenant, conversation id); at most
    ``limit`` conversations (the least recently used go first). Thread-safe."""

    def __init__(self, limit: int = 4096) -> None:
        self._d: OrderedDict[tuple[str, bytes], ToolState] = OrderedDict()
        self._limit = max(1, limit)
        self.lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> ToolState | None:
        """The state of conversation ``key`` (call under :attr:`lock`)."""
        found = self._d.get(key)
        if found is not None:
            self._d.move_to_end(key)
        return found

    def put(self, key: tuple[str, bytes], state: ToolState) -> None:
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


def apply_tool_changes(
    body: dict[str, Any], state: ToolState | None
) -> tuple[dict[str, Any], ToolState | None, list[str]]:
    """``body`` with the conversation's tool changes expressed as the docs say, the state to keep
    for the conversation, and notes.

    ``body`` is the request as it would be sent (hints placed); ``state`` the conversation's
    (None: its first request, or forgotten). A request whose tools promptcache does not handle
    is sent as it is, and the conversation forgotten (None).
    """
    tools = _named(body.get("tools"))
    messages = body.get("messages")
    if tools is None or not isinstance(messages, list):
        return body, None, []
    if any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        return body, None, ["the caller sends system messages of its own: tool changes left to it"]
    if state is None:
        return body, ToolState.start(tools), []
    now = {str(t["name"]): t for t in tools}
    for name, tool in now.items():
        known = state.definitions.get(name)
        if known is not None and known != _definition(tool):
            return body, ToolState.start(tools), [f"tool {name!r} changed its definition: tools block resent"]
    n = len(messages)
    if any(at > n for at, _, _ in state.changes):
        return body, ToolState.start(tools), ["conversation history rewritten: tools block resent"]
    added = [name for name in now if name not in state.active]
    removed = [name for name in state.active if name not in now]
    for name in added:
        if name not in state.definitions:
            tool = {k: v for k, v in now[name].items() if k != _MARKER}
            state.deferred[name] = tool
            state.definitions[name] = _definition(tool)
        state.changes.append((n, "tool_addition", name))
    for name in removed:
        state.changes.append((n, "tool_removal", name))
    state.active = [name for name in state.active if name not in removed] + added
    if not state.changes:
        return body, state, []
    return _with_changes(body, tools, state, messages), state, _notes(added, removed)


def _notes(added: list[str], removed: list[str]) -> list[str]:
    out = [f"tool {name!r} added mid-conversation (tool_addition)" for name in added]
    out += [f"tool {name!r} removed mid-conversation (tool_removal)" for name in removed]
    return out


def _with_changes(
    body: dict[str, Any], tools: list[dict[str, Any]], state: ToolState, messages: list[Any]
) -> dict[str, Any]:
    sent = [dict(t) for t in state.base]
    marker = tools[-1].get(_MARKER)
    if marker is not None and sent:
        # The breakpoint the hints put at the end of the tools goes on the last tool rendered.
        sent[-1][_MARKER] = marker
    sent += [{**t, "defer_loading": True} for t in state.deferred.values()]
    by_place: dict[int, list[dict[str, Any]]] = {}
    for at, kind, name in state.changes:
        by_place.setdefault(at, []).append({"type": kind, "tool": {"type": "tool_reference", "name": name}})
    out: list[Any] = []
    for i in range(len(messages) + 1):
        blocks = by_place.get(i)
        if blocks:
            out.append({"role": "system", "content": blocks})
        if i < len(messages):
            out.append(messages[i])
    return {**body, "tools": sent, "messages": out}
