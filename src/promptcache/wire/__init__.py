"""Wire-format adapters: split a provider request body into parts, join it back.

Every format has a system section, a tool list and a conversation, spelled
differently. An adapter splits a body into :class:`WireParts` (nothing is
dropped: fields promptcache does not touch stay in ``rest``), and joins
rewritten parts into a body of the same format, placing the volatile block
(values moved out of the stable prefix) where that format allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from promptcache.blocks import BlockKind
from promptcache.canonical import canonical_text
from promptcache.formats import WireFormat, parse_format


class WireFormatError(ValueError):
    """A request body that does not have the shape its format requires."""


@dataclass(slots=True)
class WireParts:
    """A request body split into the sections promptcache reasons about.

    ``system`` holds the texts of the system section in order, with
    ``system_kinds`` saying which are system and which developer blocks.
    ``messages`` is the conversation after the system section, and
    ``current`` the index where the current turn (after the last assistant
    message) starts.
    """

    system: list[str]
    system_kinds: list[BlockKind]
    tools: list[Any]
    messages: list[Any]
    current: int
    rest: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class VolatileAt:
    """Where a joined body carries the volatile block: ``item`` indexes the conversation
    field's list as sent (system/developer items included), and ``part`` the content part
    within that item (None: the item is the volatile block)."""

    item: int
    part: int | None = None


class WireAdapter(Protocol):
    """Split and join one wire format."""

    format: WireFormat

    def split(self, body: dict[str, Any]) -> WireParts:
        """Split ``body`` into parts; raise :class:`WireFormatError` naming the bad field."""
        ...

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        """Build a body from rewritten parts, placing ``volatile_text`` when given; returns the
        body and where the volatile block went (None: no volatile block)."""
        ...

    def tool_name(self, tool: Any) -> str:
        """The name of a tool definition (used to sort tools)."""
        ...

    def message_kind(self, message: Any) -> BlockKind:
        """HISTORY, TOOL_RESULT or USER for a conversation message."""
        ...


def normalize_message_text(message: Any) -> Any:
    """``message`` with its text in canonical form (one newline style, NFC).

    Handles string content and text parts (``{"type": "text", "text": ...}``,
    Converse ``{"text": ...}``, Gemini ``parts``) alike; returns the same object
    when nothing changes, a shallow copy otherwise (the caller's message is
    never mutated).
    """
    if not isinstance(message, dict):
        return message
    key = "content" if "content" in message else "parts" if "parts" in message else None
    if key is None:
        return message
    c = message[key]
    if isinstance(c, str):
        t = canonical_text(c)
        return message if t == c else {**message, key: t}
    if not isinstance(c, list):
        return message
    parts: list[Any] = []
    changed = False
    for p in c:
        if isinstance(p, dict) and isinstance(p.get("text"), str):
            t = canonical_text(p["text"])
            if t != p["text"]:
                p = {**p, "text": t}
                changed = True
        parts.append(p)
    return {**message, key: parts} if changed else message


def place_in_user_turn(
    conv: list[Any], current: int, part: dict[str, Any], *, is_result: str, fmt: WireFormat
) -> tuple[list[Any], VolatileAt]:
    """Put ``part`` into the current user turn of an alternating conversation.

    Before the user's own text when the turn is a plain user message; after the
    tool results when it carries them (tool results must come first in their
    message). Raises :class:`WireFormatError` when there is no user turn to carry
    it (an assistant prefill).
    Shared by the Anthropic, Bedrock and Gemini formats, which all forbid two
    consecutive user messages or a system role inside the conversation.
    """
    if not conv or current >= len(conv):
        raise WireFormatError(f"{fmt.value}: no user turn to carry the volatile block")
    last = conv[-1]
    content = last.get("content") if "content" in last else last.get("parts")
    key = "content" if "content" in last else "parts"
    if last.get("role") != "user":
        raise WireFormatError(f"{fmt.value}: no user turn to carry the volatile block")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise WireFormatError(f"{fmt.value}: no user turn to carry the volatile block")
    has_results = any(isinstance(p, dict) and is_result in p for p in content) or any(
        isinstance(p, dict) and p.get("type") == is_result for p in content
    )
    new_content = [*content, part] if has_results else [part, *content]
    at = VolatileAt(len(conv) - 1, len(new_content) - 1 if has_results else 0)
    return [*conv[:-1], {**last, key: new_content}], at


_ADAPTERS: dict[WireFormat, WireAdapter] = {}


def get_adapter(fmt: str | WireFormat) -> WireAdapter:
    """The adapter for a wire format."""
    if not _ADAPTERS:
        # Imported here: the format modules import this package for WireParts.
        from promptcache.wire import anthropic, bedrock, gemini, openai_chat, openai_responses

        _ADAPTERS.update(
            {
                WireFormat.OPENAI_CHAT: openai_chat.ADAPTER,
                WireFormat.OPENAI_RESPONSES: openai_responses.ADAPTER,
                WireFormat.ANTHROPIC_MESSAGES: anthropic.ADAPTER,
                WireFormat.BEDROCK_CONVERSE: bedrock.ADAPTER,
                WireFormat.GEMINI: gemini.ADAPTER,
            }
        )
    return _ADAPTERS[parse_format(fmt)]


#: The field holding the conversation in each format.
CONVERSATION_FIELD = {
    WireFormat.OPENAI_CHAT: "messages",
    WireFormat.OPENAI_RESPONSES: "input",
    WireFormat.ANTHROPIC_MESSAGES: "messages",
    WireFormat.BEDROCK_CONVERSE: "messages",
    WireFormat.GEMINI: "contents",
}
_GUESS = {"messages": "openai-chat or anthropic-messages", "input": "openai-responses", "contents": "gemini"}


def require_conversation(body: dict[str, Any], fmt: WireFormat) -> None:
    """Refuse a body without ``fmt``'s conversation field, naming the format it looks like.

    Without this, a body built for another format would be "rewritten" into an
    empty conversation instead of failing where the mistake is.
    """
    own = CONVERSATION_FIELD[fmt]
    if own in body:
        return
    for other in ("messages", "input", "contents"):
        if other != own and other in body:
            raise WireFormatError(
                f"{fmt.value}: no '{own}' field, but a '{other}' one: this body looks like "
                f"{_GUESS[other]}; pass the format it was built for"
            )
    raise WireFormatError(f"{fmt.value}: field '{own}' is missing (the conversation to send)")


def require_list(body: dict[str, Any], name: str, fmt: str) -> list[Any]:
    """``body[name]`` as a list (missing means empty), or a clear error."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WireFormatError(f"{fmt}: field '{name}' must be a list, got {type(value).__name__}")
    return value


def first_without_role(messages: list[Any], roles: tuple[str, ...] | None, /) -> int:
    """Index of the first message that is not an object with a ``role`` (or, with ``roles``,
    whose ``role`` is not one of them); -1 when every message has one.

    >>> first_without_role([{"role": "user"}, {"content": "x"}], None)
    1
    >>> first_without_role([{"role": "system"}], ("user", "assistant"))
    0
    """
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or ("role" not in m if roles is None else m.get("role") not in roles):
            return j
    return -1


def current_turn(messages: list[Any], is_assistant: Callable[[Any], bool]) -> int:
    """Index where the current turn starts: just after the last assistant message.

    With no assistant message yet, the current turn is the last message.
    """
    for j in range(len(messages) - 1, -1, -1):
        if is_assistant(messages[j]):
            return j + 1
    return max(len(messages) - 1, 0)
