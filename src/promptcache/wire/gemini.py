"""Gemini ``generateContent`` (``gemini``), camelCase or snake_case field names."""

from __future__ import annotations

from typing import Any

from promptcache.blocks import BlockKind
from promptcache.formats import WireFormat
from promptcache.wire import (
    VolatileAt,
    WireFormatError,
    WireParts,
    current_turn,
    place_in_user_turn,
    require_conversation,
    require_list,
)


def _field(body: dict[str, Any], camel: str, snake: str) -> str:
    return snake if snake in body and camel not in body else camel


class GeminiAdapter:
    """Split/join ``{"systemInstruction": ..., "contents": [...], "tools": [...]}`` bodies."""

    format = WireFormat.GEMINI

    def split(self, body: dict[str, Any]) -> WireParts:
        require_conversation(body, self.format)
        fmt = self.format.value
        si_key = _field(body, "systemInstruction", "system_instruction")
        si = body.get(si_key)
        texts: list[str] = []
        si_parts: list[Any] = []
        if si is not None:
            if isinstance(si, str):
                si_parts = [{"text": si}]
            elif isinstance(si, dict):
                si_parts = require_list(si, "parts", fmt)
            else:
                raise WireFormatError(f"{fmt}: field '{si_key}' must be an object with 'parts'")
            for i, p in enumerate(si_parts):
                if not isinstance(p, dict) or not isinstance(p.get("text"), str):
                    raise WireFormatError(f"{fmt}: {si_key}.parts[{i}] must be a text part")
                texts.append(p["text"])
        decls: list[Any] = []
        other_tools: list[Any] = []
        decl_key = "functionDeclarations"
        for t in require_list(body, "tools", fmt):
            if not isinstance(t, dict):
                raise WireFormatError(f"{fmt}: tools[] entries must be objects")
            key = _field(t, "functionDeclarations", "function_declarations")
            if key in t:
                decl_key = key
                decls.extend(require_list(t, key, fmt))
            else:
                other_tools.append(t)
        contents = require_list(body, "contents", fmt)
        for j, c in enumerate(contents):
            if not isinstance(c, dict):
                raise WireFormatError(f"{fmt}: contents[{j}] must be an object")
        current = current_turn(contents, lambda m: m.get("role") == "model")
        rest = {k: v for k, v in body.items() if k not in (si_key, "tools", "contents")}
        extra = {
            "si_key": si_key,
            "si": si,
            "decl_key": decl_key,
            "other_tools": other_tools,
            "had_tools": "tools" in body,
        }
        return WireParts(texts, [BlockKind.SYSTEM] * len(texts), decls, contents, current, rest, extra)

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        body: dict[str, Any] = dict(parts.rest)
        si = parts.extra["si"]
        if si is not None:
            new_parts = [{"text": t} for t in system if t]
            body[parts.extra["si_key"]] = (
                {**si, "parts": new_parts} if isinstance(si, dict) else {"parts": new_parts}
            )
        if parts.extra["had_tools"]:
            decl_tools = [{parts.extra["decl_key"]: tools}] if tools else []
            body["tools"] = decl_tools + parts.extra["other_tools"]
        conv = list(messages)
        at: VolatileAt | None = None
        if volatile_text:
            conv, at = place_in_user_turn(
                conv, parts.current, {"text": volatile_text}, is_result="functionResponse", fmt=self.format
            )
        body["contents"] = conv
        return body, at

    def tool_name(self, tool: Any) -> str:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            return str(tool["name"])
        raise WireFormatError(f"{self.format.value}: every function declaration needs a 'name'")

    def message_kind(self, message: Any) -> BlockKind:
        ps = message.get("parts")
        if isinstance(ps, list) and any(
            isinstance(p, dict) and ("functionResponse" in p or "function_response" in p) for p in ps
        ):
            return BlockKind.TOOL_RESULT
        return BlockKind.HISTORY


ADAPTER = GeminiAdapter()
