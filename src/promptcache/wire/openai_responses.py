"""OpenAI Responses API (``openai-responses``)."""

from __future__ import annotations

from typing import Any

from promptcache.blocks import BlockKind
from promptcache.formats import WireFormat
from promptcache.wire import (
    VolatileAt,
    WireFormatError,
    WireParts,
    current_turn,
    require_conversation,
    require_list,
)

_SYSTEM_ROLES = {"system": BlockKind.SYSTEM, "developer": BlockKind.DEVELOPER}
_ASSISTANT_TYPES = frozenset({"function_call", "reasoning", "custom_tool_call"})


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") in ("input_text", "text") for p in content
    ):
        return "".join(str(p.get("text", "")) for p in content)
    raise WireFormatError(f"openai-responses: {where}.content must be text or input_text parts")


class OpenAIResponsesAdapter:
    """Split/join ``{"instructions": ..., "input": [...], "tools": [...]}`` bodies."""

    format = WireFormat.OPENAI_RESPONSES

    def split(self, body: dict[str, Any]) -> WireParts:
        require_conversation(body, self.format)
        fmt = self.format.value
        raw_input = body.get("input")
        items: list[Any]
        if isinstance(raw_input, str):
            items = [{"role": "user", "content": raw_input}]
        else:
            items = require_list(body, "input", fmt)
        instructions = body.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise WireFormatError(f"{fmt}: field 'instructions' must be a string")
        system: list[str] = []
        kinds: list[BlockKind] = []
        if instructions is not None:
            system.append(instructions)
            kinds.append(BlockKind.SYSTEM)
        i = 0
        while i < len(items):
            it = items[i]
            if not isinstance(it, dict):
                raise WireFormatError(f"{fmt}: input[{i}] must be an object")
            kind = _SYSTEM_ROLES.get(str(it.get("role")))
            if kind is None or it.get("type", "message") != "message":
                break
            system.append(_text(it.get("content"), f"input[{i}]"))
            kinds.append(kind)
            i += 1
        conv = items[i:]
        for j, it in enumerate(conv, start=i):
            if not isinstance(it, dict):
                raise WireFormatError(f"{fmt}: input[{j}] must be an object (a message or other item)")
        current = current_turn(
            conv, lambda it: it.get("role") == "assistant" or it.get("type") in _ASSISTANT_TYPES
        )
        rest = {k: v for k, v in body.items() if k not in ("instructions", "input", "tools")}
        lead_roles = [str(items[k].get("role")) for k in range(i)]
        extra = {
            "had_instructions": instructions is not None,
            "lead_roles": lead_roles,
            "input_was_str": isinstance(raw_input, str),
            "had_tools": "tools" in body,
        }
        tools = require_list(body, "tools", fmt)
        return WireParts(system, kinds, tools, conv, current, rest, extra)

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        body: dict[str, Any] = {}
        texts = list(system)
        if parts.extra["had_instructions"]:
            body["instructions"] = texts.pop(0)
        lead = [
            {"role": role, "content": t}
            for role, t in zip(parts.extra["lead_roles"], texts, strict=True)
            if t
        ]
        conv = list(messages)
        at: VolatileAt | None = None
        if volatile_text:
            vitem = {"role": "developer", "content": volatile_text}
            last = conv[-1] if conv else None
            if last is not None and last.get("role") == "user" and parts.current == len(conv) - 1:
                at = VolatileAt(len(lead) + len(conv) - 1)
                conv.insert(len(conv) - 1, vitem)
            else:
                at = VolatileAt(len(lead) + len(conv))
                conv.append(vitem)
        body.update({k: v for k, v in parts.rest.items()})
        if parts.extra["had_tools"]:
            body["tools"] = tools
        if parts.extra["input_was_str"] and not lead and len(conv) == 1:
            body["input"] = conv[0]["content"]
        else:
            body["input"] = lead + conv
        return body, at

    def tool_name(self, tool: Any) -> str:
        if isinstance(tool, dict):
            if isinstance(tool.get("name"), str):
                return str(tool["name"])
            # Built-in tools (web_search, file_search) have a type and no name.
            if isinstance(tool.get("type"), str):
                return "~" + str(tool["type"])
        raise WireFormatError(f"{self.format.value}: every tools[] entry needs a 'name' or 'type'")

    def message_kind(self, message: Any) -> BlockKind:
        if message.get("type") in ("function_call_output", "custom_tool_call_output"):
            return BlockKind.TOOL_RESULT
        return BlockKind.HISTORY


ADAPTER = OpenAIResponsesAdapter()
