"""Convert request bodies between wire formats, as an app switching providers would.

OpenAI Chat Completions is the pivot: every format converts to and from it.
What moves: the system prompt (each system/developer message stays its own block,
wherever it stood — providers other than OpenAI only accept system text up front,
so it is hoisted there, in order), the tools (name, description, JSON schema),
tool calls and their results (ids kept, so calls and results stay paired), text and
image parts, ``tool_choice`` and the output-token limit. Provider caching hints
(``cache_control``, ``cachePoint``, ``prompt_cache_key``) are dropped: an app
switching providers would not carry them over, and promptcache places its own.

>>> body = {"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."},
...                                          {"role": "user", "content": "hi"}]}
>>> convert(body, "openai-chat", "anthropic-messages")["system"]
'Be brief.'
"""

from __future__ import annotations

import json
from typing import Any

from promptcache.formats import WireFormat, parse_format

__all__ = [
    "DEFAULT_MODELS",
    "anthropic_messages",
    "anthropic_tools",
    "convert",
    "default_model",
    "from_openai_chat",
    "to_openai_chat",
]

Json = dict[str, Any]

# The model an app switching to a provider would pick when the source names another
# family's model (comparable tier to gpt-4o).
DEFAULT_MODELS: dict[WireFormat, str] = {
    WireFormat.OPENAI_CHAT: "gpt-4o",
    WireFormat.OPENAI_RESPONSES: "gpt-4o",
    WireFormat.ANTHROPIC_MESSAGES: "claude-sonnet-4-5",
    WireFormat.BEDROCK_CONVERSE: "anthropic.claude-sonnet-4-5-20250929-v1:0",
    WireFormat.GEMINI: "gemini-2.5-flash",
}
_FAMILY = {
    WireFormat.OPENAI_CHAT: ("gpt", "o1", "o3", "o4", "chatgpt"),
    WireFormat.OPENAI_RESPONSES: ("gpt", "o1", "o3", "o4", "chatgpt"),
    WireFormat.ANTHROPIC_MESSAGES: ("claude",),
    WireFormat.BEDROCK_CONVERSE: ("anthropic.", "us.anthropic.", "eu.anthropic.", "global.anthropic."),
    WireFormat.GEMINI: ("gemini",),
}
_DEFAULT_MAX_TOKENS = 1024


def default_model(model: str | None, dst: str | WireFormat) -> str:
    """``model`` if it belongs to ``dst``'s provider family, else that provider's default."""
    fmt = parse_format(dst)
    m = (model or "").lower()
    if m and m.startswith(_FAMILY[fmt]):
        return model or DEFAULT_MODELS[fmt]
    return DEFAULT_MODELS[fmt]


def convert(body: Json, src: str | WireFormat, dst: str | WireFormat, *, model: str | None = None) -> Json:
    """``body`` (a ``src`` request) as the equivalent ``dst`` request.

    ``model`` names the target model; by default the source model is kept when it
    belongs to the target's family, otherwise :data:`DEFAULT_MODELS` picks one.
    """
    s, d = parse_format(src), parse_format(dst)
    if s is d and model is None:
        return body
    chat = to_openai_chat(body, s)
    return from_openai_chat(chat, d, model=model or default_model(str(body.get("model") or ""), d))


# ---------------------------------------------------------------------------------------
# From OpenAI Chat Completions
# ---------------------------------------------------------------------------------------


def _max_tokens(body: Json) -> int:
    v = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    return int(v) if isinstance(v, int) and v > 0 else _DEFAULT_MAX_TOKENS


def _text(content: Any) -> str:
    """Plain text of an OpenAI content value (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p)
    return ""


def _args(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw or "{}")
        except ValueError:
            return {"_raw": raw}  # not JSON: keep the text so nothing is lost
    return raw if raw is not None else {}


def _is_system(m: Json) -> bool:
    return m.get("role") in ("system", "developer")


def anthropic_tools(tools: list[Json]) -> list[Json]:
    """OpenAI function tools as Anthropic tools."""
    out = []
    for t in tools:
        f = t.get("function", t)
        out.append(
            {
                "name": f["name"],
                "description": f.get("description", ""),
                "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return out


def _anthropic_parts(content: Any) -> str | list[Json]:
    if isinstance(content, str):
        return content
    parts: list[Json] = []
    for p in content or []:
        if not isinstance(p, dict):
            continue
        if p.get("type") == "text":
            parts.append({"type": "text", "text": p.get("text", "")})
        elif p.get("type") == "image_url":
            url = str((p.get("image_url") or {}).get("url", ""))
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                parts.append(
                    {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
                )
            else:
                parts.append({"type": "image", "source": {"type": "url", "url": url}})
    return parts


def anthropic_messages(history: list[Json]) -> list[Json]:
    """OpenAI-style history as Anthropic messages (tool calls → tool_use/tool_result).

    System messages are skipped (they belong in ``system``); consecutive tool results
    share one user message, as Anthropic requires.
    """
    out: list[Json] = []
    for m in history:
        role = m.get("role")
        if _is_system(m):
            continue
        if role == "assistant":
            content: list[Json] = []
            text = _text(m.get("content"))
            if text:
                content.append({"type": "text", "text": text})
            for c in m.get("tool_calls") or []:
                content.append(
                    {
                        "type": "tool_use",
                        "id": c["id"],
                        "name": c["function"]["name"],
                        "input": _args(c["function"].get("arguments")),
                    }
                )
            out.append({"role": "assistant", "content": content})
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m["tool_call_id"],
                "content": _text(m.get("content")),
            }
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        else:
            out.append({"role": "user", "content": _anthropic_parts(m.get("content"))})
    return out


def _anthropic_tool_choice(tc: Any) -> Json | None:
    if tc == "auto":
        return {"type": "auto"}
    if tc == "required":
        return {"type": "any"}
    if tc == "none":
        return {"type": "none"}
    if isinstance(tc, dict) and tc.get("type") == "function":
        return {"type": "tool", "name": tc["function"]["name"]}
    return None


def _to_anthropic(body: Json, model: str) -> Json:
    messages = list(body.get("messages") or [])
    system = [_text(m.get("content")) for m in messages if _is_system(m)]
    out: Json = {"model": model, "max_tokens": _max_tokens(body)}
    if len(system) == 1:
        out["system"] = system[0]
    elif system:
        out["system"] = [{"type": "text", "text": s} for s in system]
    if body.get("tools"):
        out["tools"] = anthropic_tools(body["tools"])
        tc = _anthropic_tool_choice(body.get("tool_choice"))
        if tc is not None:
            out["tool_choice"] = tc
    out["messages"] = anthropic_messages(messages)
    for k in ("temperature", "top_p", "stream"):
        if k in body:
            out[k] = body[k]
    return out


def _to_converse(body: Json, model: str) -> Json:
    msgs: list[Json] = []
    system: list[Json] = []
    for m in anthropic_messages(list(body.get("messages") or [])):
        content = m["content"]
        blocks: list[Json] = []
        for b in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            if b["type"] == "text":
                blocks.append({"text": b["text"]})
            elif b["type"] == "tool_use":
                blocks.append({"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}})
            elif b["type"] == "tool_result":
                blocks.append(
                    {"toolResult": {"toolUseId": b["tool_use_id"], "content": [{"text": b["content"]}]}}
                )
            elif b["type"] == "image":
                blocks.append({"image": {"format": "png", "source": b["source"]}})
        msgs.append({"role": m["role"], "content": blocks})
    for m in body.get("messages") or []:
        if _is_system(m):
            system.append({"text": _text(m.get("content"))})
    out: Json = {"modelId": model, "messages": msgs, "inferenceConfig": {"maxTokens": _max_tokens(body)}}
    if system:
        out["system"] = system
    if body.get("tools"):
        out["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": t["name"],
                        "description": t["description"],
                        "inputSchema": {"json": t["input_schema"]},
                    }
                }
                for t in anthropic_tools(body["tools"])
            ]
        }
    return out


def _to_gemini(body: Json, model: str) -> Json:
    names: dict[str, str] = {}  # tool_call_id -> function name: Gemini pairs results by name
    contents: list[Json] = []
    system: list[Json] = []
    for m in body.get("messages") or []:
        role = m.get("role")
        if _is_system(m):
            system.append({"text": _text(m.get("content"))})
            continue
        parts: list[Json] = []
        if role == "assistant":
            if _text(m.get("content")):
                parts.append({"text": _text(m.get("content"))})
            for c in m.get("tool_calls") or []:
                names[c["id"]] = c["function"]["name"]
                parts.append(
                    {
                        "functionCall": {
                            "name": c["function"]["name"],
                            "args": _args(c["function"].get("arguments")),
                        }
                    }
                )
            g_role = "model"
        elif role == "tool":
            name = names.get(str(m.get("tool_call_id")), "tool")
            parts.append(
                {"functionResponse": {"name": name, "response": {"content": _text(m.get("content"))}}}
            )
            g_role = "user"
            if (
                contents
                and contents[-1]["role"] == "user"
                and "functionResponse" in contents[-1]["parts"][-1]
            ):
                contents[-1]["parts"].extend(parts)
                continue
        else:
            parts.append({"text": _text(m.get("content"))})
            g_role = "user"
        contents.append({"role": g_role, "parts": parts})
    out: Json = {
        "model": model,
        "contents": contents,
        "generationConfig": {"maxOutputTokens": _max_tokens(body)},
    }
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = [
            {
                "functionDeclarations": [
                    {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]}
                    for t in anthropic_tools(body["tools"])
                ]
            }
        ]
    return out


def _to_responses(body: Json, model: str) -> Json:
    messages = list(body.get("messages") or [])
    out: Json = {"model": model}
    # The first system message is the app's instructions; later ones stay input items
    # where they stood (Responses accepts system/developer items anywhere).
    if messages and _is_system(messages[0]):
        out["instructions"] = _text(messages[0].get("content"))
        messages = messages[1:]
    items: list[Json] = []
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            if _text(m.get("content")):
                items.append({"role": "assistant", "content": _text(m.get("content"))})
            for c in m.get("tool_calls") or []:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": c["id"],
                        "name": c["function"]["name"],
                        "arguments": c["function"].get("arguments") or "{}",
                    }
                )
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m["tool_call_id"],
                    "output": _text(m.get("content")),
                }
            )
        else:
            items.append({"role": role, "content": m.get("content")})
    out["input"] = items
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "parameters": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in body["tools"]
        ]
    tc = body.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") == "function":
        out["tool_choice"] = {"type": "function", "name": tc["function"]["name"]}
    elif tc is not None:
        out["tool_choice"] = tc
    if body.get("max_completion_tokens") or body.get("max_tokens"):
        out["max_output_tokens"] = _max_tokens(body)
    return out


def from_openai_chat(body: Json, dst: str | WireFormat, *, model: str | None = None) -> Json:
    """An OpenAI Chat Completions body as a ``dst`` body."""
    d = parse_format(dst)
    m = model or default_model(str(body.get("model") or ""), d)
    if d is WireFormat.OPENAI_CHAT:
        return dict(body, model=m)
    if d is WireFormat.ANTHROPIC_MESSAGES:
        return _to_anthropic(body, m)
    if d is WireFormat.BEDROCK_CONVERSE:
        return _to_converse(body, m)
    if d is WireFormat.GEMINI:
        return _to_gemini(body, m)
    return _to_responses(body, m)


# ---------------------------------------------------------------------------------------
# To OpenAI Chat Completions
# ---------------------------------------------------------------------------------------


def _from_anthropic(body: Json) -> Json:
    messages: list[Json] = []
    system = body.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list):
        for b in system:
            if isinstance(b, dict) and b.get("type") == "text":
                messages.append({"role": "system", "content": b.get("text", "")})
    for m in body.get("messages") or []:
        content = m.get("content")
        if isinstance(content, str):
            messages.append({"role": m["role"], "content": content})
            continue
        texts: list[str] = []
        calls: list[Json] = []
        for b in content or []:
            kind = b.get("type")
            if kind == "text":
                texts.append(str(b.get("text", "")))
            elif kind == "tool_use":
                calls.append(
                    {
                        "id": b["id"],
                        "type": "function",
                        "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})},
                    }
                )
            elif kind == "tool_result":
                # OpenAI wants tool results as their own messages, before any user text.
                messages.append(
                    {"role": "tool", "tool_call_id": b["tool_use_id"], "content": _result_text(b)}
                )
        if m["role"] == "assistant":
            msg: Json = {"role": "assistant", "content": "".join(texts) or None}
            if calls:
                msg["tool_calls"] = calls
            messages.append(msg)
        elif texts:
            messages.append({"role": "user", "content": "".join(texts)})
    out: Json = {"model": body.get("model", ""), "messages": messages}
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object", "properties": {}},
                },
            }
            for t in body["tools"]
            if "input_schema" in t or "name" in t
        ]
    tc = body.get("tool_choice")
    if isinstance(tc, dict):
        kind = tc.get("type")
        if kind == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": tc["name"]}}
        elif kind in ("auto", "none"):
            out["tool_choice"] = kind
        elif kind == "any":
            out["tool_choice"] = "required"
    if body.get("max_tokens"):
        out["max_completion_tokens"] = body["max_tokens"]
    return out


def _result_text(block: Json) -> str:
    c = block.get("content")
    if isinstance(c, str):
        return c
    return "".join(str(p.get("text", "")) for p in c or [] if isinstance(p, dict))


def _from_responses(body: Json) -> Json:
    messages: list[Json] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    inp = body.get("input")
    if isinstance(inp, str):
        messages.append({"role": "user", "content": inp})
    for item in inp if isinstance(inp, list) else []:
        kind = item.get("type")
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments", "{}")},
            }
            if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": str(item.get("output", ""))}
            )
        else:
            content = item.get("content")
            if isinstance(content, list):
                content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            messages.append({"role": item.get("role", "user"), "content": content})
    out: Json = {"model": body.get("model", ""), "messages": messages}
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t.get("parameters"),
                },
            }
            for t in tools
        ]
    if body.get("max_output_tokens"):
        out["max_completion_tokens"] = body["max_output_tokens"]
    return out


def _from_converse(body: Json) -> Json:
    anth: Json = {"model": body.get("modelId", ""), "messages": []}
    system = [{"type": "text", "text": b["text"]} for b in body.get("system") or [] if "text" in b]
    if system:
        anth["system"] = system
    for m in body.get("messages") or []:
        blocks: list[Json] = []
        for b in m.get("content") or []:
            if "text" in b:
                blocks.append({"type": "text", "text": b["text"]})
            elif "toolUse" in b:
                tu = b["toolUse"]
                blocks.append(
                    {"type": "tool_use", "id": tu["toolUseId"], "name": tu["name"], "input": tu.get("input")}
                )
            elif "toolResult" in b:
                tr = b["toolResult"]
                text = "".join(str(p.get("text", "")) for p in tr.get("content") or [])
                blocks.append({"type": "tool_result", "tool_use_id": tr["toolUseId"], "content": text})
        anth["messages"].append({"role": m["role"], "content": blocks})
    tools = [t["toolSpec"] for t in (body.get("toolConfig") or {}).get("tools") or [] if "toolSpec" in t]
    if tools:
        anth["tools"] = [
            {
                "name": t["name"],
                "description": t.get("description", ""),
                "input_schema": (t.get("inputSchema") or {}).get("json"),
            }
            for t in tools
        ]
    return _from_anthropic(anth)


def _from_gemini(body: Json) -> Json:
    messages: list[Json] = []
    si = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(si, dict):
        for p in si.get("parts") or []:
            messages.append({"role": "system", "content": p.get("text", "")})
    n = 0
    pending: list[str] = []  # call ids by position: Gemini pairs calls and results by order
    for c in body.get("contents") or []:
        texts, calls = [], []
        for p in c.get("parts") or []:
            if "text" in p:
                texts.append(p["text"])
            elif "functionCall" in p:
                n += 1
                cid = f"call_{n}"
                pending.append(cid)
                fc = p["functionCall"]
                calls.append(
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": fc["name"], "arguments": json.dumps(fc.get("args") or {})},
                    }
                )
            elif "functionResponse" in p:
                cid = pending.pop(0) if pending else "call_0"
                resp = p["functionResponse"].get("response") or {}
                text = resp.get("content") if isinstance(resp.get("content"), str) else json.dumps(resp)
                messages.append({"role": "tool", "tool_call_id": cid, "content": text})
        if c.get("role") == "model":
            msg: Json = {"role": "assistant", "content": "".join(texts) or None}
            if calls:
                msg["tool_calls"] = calls
            messages.append(msg)
        elif texts:
            messages.append({"role": "user", "content": "".join(texts)})
    out: Json = {"model": body.get("model", ""), "messages": messages}
    decls = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    if decls:
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": d["name"],
                    "description": d.get("description", ""),
                    "parameters": d.get("parameters"),
                },
            }
            for d in decls
        ]
    return out


def to_openai_chat(body: Json, src: str | WireFormat) -> Json:
    """A ``src`` body as an OpenAI Chat Completions body (the pivot format)."""
    s = parse_format(src)
    if s is WireFormat.OPENAI_CHAT:
        return body
    if s is WireFormat.ANTHROPIC_MESSAGES:
        return _from_anthropic(body)
    if s is WireFormat.OPENAI_RESPONSES:
        return _from_responses(body)
    if s is WireFormat.BEDROCK_CONVERSE:
        return _from_converse(body)
    return _from_gemini(body)
