"""AWS Bedrock Converse / ConverseStream (``bedrock-converse``)."""

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


class BedrockConverseAdapter:
    """Split/join ``{"system": [...], "messages": [...], "toolConfig": {"tools": [...]}}``."""

    format = WireFormat.BEDROCK_CONVERSE

    def split(self, body: dict[str, Any]) -> WireParts:
        require_conversation(body, self.format)
        fmt = self.format.value
        system_raw = require_list(body, "system", fmt)
        texts: list[str] = []
        for i, b in enumerate(system_raw):
            if not isinstance(b, dict):
                raise WireFormatError(f"{fmt}: system[{i}] must be an object")
            if "text" in b:
                if type(b["text"]) is not str:  # str() would send another value than the caller's
                    raise WireFormatError(f"{fmt}: system[{i}].text must be a string")
                texts.append(b["text"])
        tool_config = body.get("toolConfig")
        tools: list[Any] = []
        tool_points: list[Any] = []
        if tool_config is not None:
            if not isinstance(tool_config, dict):
                raise WireFormatError(f"{fmt}: field 'toolConfig' must be an object")
            for t in require_list(tool_config, "tools", fmt):
                if isinstance(t, dict) and "cachePoint" in t:
                    # Re-added after the (sorted) tools on join, as the caller wrote it (its ttl
                    # included); several become their last one, their places gone with the order.
                    tool_points = [t]
                else:
                    tools.append(t)
        messages = require_list(body, "messages", fmt)
        bad = first_without_role(messages, _ROLES)
        if bad >= 0:
            raise WireFormatError(f"{fmt}: messages[{bad}].role must be 'user' or 'assistant'")
        current = current_turn(messages, lambda m: m["role"] == "assistant")
        rest = {k: v for k, v in body.items() if k not in ("system", "messages")}
        extra = {
            "system_raw": system_raw,
            "had_system": "system" in body,
            "tool_points": tool_points,
        }
        return WireParts(texts, [BlockKind.SYSTEM] * len(texts), tools, messages, current, rest, extra)

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        body: dict[str, Any] = dict(parts.rest)
        it = iter(system)
        sys_out: list[Any] = []
        for b in parts.extra["system_raw"]:
            if "text" in b:
                t = next(it)
                if t:
                    sys_out.append({**b, "text": t})
            else:
                sys_out.append(b)
        conv = list(messages)
        at: VolatileAt | None = None
        if volatile_text:
            conv, at = place_in_user_turn(
                conv, parts.current, {"text": volatile_text}, is_result="toolResult", fmt=self.format
            )
        if parts.extra["had_system"]:
            body["system"] = sys_out
        if "toolConfig" in body:
            body["toolConfig"] = {**body["toolConfig"], "tools": list(tools) + parts.extra["tool_points"]}
        body["messages"] = conv
        return body, at

    def tool_name(self, tool: Any) -> str:
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            return str(spec["name"])
        raise WireFormatError(f"{self.format.value}: every toolConfig.tools[] entry needs toolSpec.name")

    def message_kind(self, message: Any) -> BlockKind:
        c = message.get("content")
        if isinstance(c, list) and any(isinstance(p, dict) and "toolResult" in p for p in c):
            return BlockKind.TOOL_RESULT
        return BlockKind.HISTORY


ADAPTER = BedrockConverseAdapter()
