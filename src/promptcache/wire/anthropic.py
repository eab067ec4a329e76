"""Anthropic Messages (``anthropic-messages``), also Claude on Bedrock InvokeModel and Vertex."""

from __future__ import annotations

from typing import Any

from promptcache.blocks import BlockKind
from promptcache.formats import WireFormat
from promptcache.wire import (
    VolatileAt,
    WireFormatError,
    WireParts,
    current_turn,
    first_without_role,
    place_in_user_turn,
    require_conversation,
    require_list,
)

_ROLES = ("user", "assistant")


def volatile_part(text: str) -> dict[str, Any]:
    """A text content block carrying the volatile block."""
    return {"type": "text", "text": text}


class AnthropicAdapter:
    """Split/join ``{"system": ..., "tools": [...], "messages": [...]}`` bodies."""

    format = WireFormat.ANTHROPIC_MESSAGES

    def split(self, body: dict[str, Any]) -> WireParts:
        require_conversation(body, self.format)
        fmt = self.format.value
        raw_system = body.get("system")
        blocks: list[dict[str, Any]]
        if raw_system is None:
            blocks = []
        elif isinstance(raw_system, str):
            blocks = [{"type": "text", "text": raw_system}]
        elif isinstance(raw_system, list):
            blocks = []
            for i, b in enumerate(raw_system):
                if not isinstance(b, dict) or b.get("type") != "text" or not isinstance(b.get("text"), str):
                    raise WireFormatError(f"{fmt}: system[{i}] must be a text block")
                blocks.append(b)
        else:
            raise WireFormatError(f"{fmt}: field 'system' must be a string or a list of text blocks")
        tools = require_list(body, "tools", fmt)
        messages = require_list(body, "messages", fmt)
        bad = first_without_role(messages, _ROLES)
        if bad >= 0:
            raise WireFormatError(f"{fmt}: messages[{bad}].role must be 'user' or 'assistant'")
        current = current_turn(messages, lambda m: m["role"] == "assistant")
        rest = {k: v for k, v in body.items() if k not in ("system", "tools", "messages")}
        extra = {
            "system_blocks": blocks,
            "system_was_str": isinstance(raw_system, str),
            "had_system": raw_system is not None,
            "had_tools": "tools" in body,
        }
        texts = [b["text"] for b in blocks]
        return WireParts(texts, [BlockKind.SYSTEM] * len(texts), tools, messages, current, rest, extra)

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        body: dict[str, Any] = {}
        for k, v in parts.rest.items():
            body[k] = v
        orig = parts.extra["system_blocks"]
        sys_blocks = [{**b, "text": t} for b, t in zip(orig, system, strict=True) if t]
        conv = list(messages)
        at: VolatileAt | None = None
        if volatile_text:
            conv, at = place_in_user_turn(
                conv, parts.current, volatile_part(volatile_text), is_result="tool_result", fmt=self.format
            )
        if parts.extra["had_tools"]:
            body["tools"] = tools
        if parts.extra["had_system"]:
            has_markers = any("cache_control" in b for b in sys_blocks)
            if parts.extra["system_was_str"] and len(sys_blocks) == 1 and not has_markers:
                body["system"] = sys_blocks[0]["text"]
            else:
                body["system"] = sys_blocks
        body["messages"] = conv
        return body, at

    def tool_name(self, tool: Any) -> str:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            return str(tool["name"])
        raise WireFormatError(f"{self.format.value}: every tools[] entry needs a 'name'")

    def message_kind(self, message: Any) -> BlockKind:
        c = message.get("content")
        if (
            message.get("role") == "user"
            and isinstance(c, list)
            and any(isinstance(p, dict) and p.get("type") == "tool_result" for p in c)
        ):
            return BlockKind.TOOL_RESULT
        return BlockKind.HISTORY


ADAPTER = AnthropicAdapter()
