"""OpenAI Chat Completions (``openai-chat``), also vLLM, OpenRouter, LiteLLM proxies."""

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
    require_conversation,
    require_list,
)

_FORMAT = WireFormat.OPENAI_CHAT.value
_SYSTEM_ROLES = {"system": BlockKind.SYSTEM, "developer": BlockKind.DEVELOPER}


def _is_assistant(message: Any) -> bool:
    return bool(message["role"] == "assistant")


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise WireFormatError(f"openai-chat: {where}.content must be text or text parts")


class OpenAIChatAdapter:
    """Split/join ``{"messages": [...], "tools": [...]}`` bodies."""

    format = WireFormat.OPENAI_CHAT

    def split(self, body: dict[str, Any]) -> WireParts:
        require_conversation(body, self.format)
        if "system" in body:
            raise WireFormatError(
                "openai-chat: a top-level 'system' field belongs to anthropic-messages; "
                "send system messages in 'messages' (or pass format='anthropic-messages')"
            )
        messages = body.get("messages")
        if type(messages) is not list:  # the usual body skips the general check and its messages
            messages = require_list(body, "messages", _FORMAT)
        tools = body.get("tools")
        if type(tools) is not list:
            tools = require_list(body, "tools", _FORMAT)
        i = 0
        system: list[str] = []
        kinds: list[BlockKind] = []
        while i < len(messages):
            m = messages[i]
            if not isinstance(m, dict) or "role" not in m:
                raise WireFormatError(f"openai-chat: messages[{i}] must be an object with a 'role'")
            kind = _SYSTEM_ROLES.get(m["role"])
            if kind is None:
                break
            content = m.get("content")
            system.append(content if type(content) is str else _text(content, f"messages[{i}]"))
            kinds.append(kind)
            i += 1
        conv = messages[i:]
        bad = first_without_role(conv, None)
        if bad >= 0:
            raise WireFormatError(f"openai-chat: messages[{i + bad}] must be an object with a 'role'")
        current = current_turn(conv, _is_assistant)
        rest = dict(body)
        rest.pop("messages", None)
        rest.pop("tools", None)
        role = messages[0]["role"] if system else "system"
        extra = {"volatile_role": role, "had_tools": "tools" in body}
        return WireParts(system, kinds, tools, conv, current, rest, extra)

    def join(
        self,
        parts: WireParts,
        system: list[str],
        tools: list[Any],
        messages: list[Any],
        volatile_text: str | None,
    ) -> tuple[dict[str, Any], VolatileAt | None]:
        # Plain loops, not comprehensions: each comprehension is a function of its own, and
        # this runs on every request.
        conv: list[Any] = []
        for t, k in zip(system, parts.system_kinds, strict=True):
            if t:
                conv.append({"role": "developer" if k is BlockKind.DEVELOPER else "system", "content": t})
        n_sys = len(conv)
        conv += messages
        at: VolatileAt | None = None
        if volatile_text:
            vmsg = {"role": parts.extra["volatile_role"], "content": volatile_text}
            cur = n_sys + parts.current
            # Tool messages must follow the assistant's tool calls directly, so
            # the block goes before a user turn but after a tool-result turn.
            if cur < len(conv) and conv[cur].get("role") == "user" and cur == len(conv) - 1:
                conv.insert(cur, vmsg)
                at = VolatileAt(cur)
            else:
                at = VolatileAt(len(conv))
                conv.append(vmsg)
        # The caller's top-level field order where possible: model, messages, tools, the rest.
        rest = parts.rest
        body: dict[str, Any] = {"model": rest["model"]} if "model" in rest else {}
        body["messages"] = conv
        if parts.extra["had_tools"]:
            body["tools"] = tools
        for key, value in rest.items():
            if key != "model":
                body[key] = value
        return body, at

    def tool_name(self, tool: Any) -> str:
        if isinstance(tool, dict):
            fn = tool.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                return str(fn["name"])
            if isinstance(tool.get("name"), str):
                return str(tool["name"])
        raise WireFormatError("openai-chat: every tools[] entry needs function.name")

    def message_kind(self, message: Any) -> BlockKind:
        role = message.get("role")
        if role == "tool" or role == "function":
            return BlockKind.TOOL_RESULT
        return BlockKind.HISTORY


ADAPTER = OpenAIChatAdapter()
