"""Helpers shared by the LangChain and LangGraph integration tests (no fixtures here)."""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import StructuredTool
from langchain_openai import ChatOpenAI

CLOCK_LINE = "The current time is 2024-05-15 15:00:00 EST."
_CLOCK = re.compile(r"The current time is 2024-05-15 15:\d\d:00 EST\.")


def stamp(policy: str, minute: int) -> str:
    """The airline policy with its clock line set to 15:MM (a clock that moves between calls)."""
    return policy.replace(CLOCK_LINE, f"The current time is 2024-05-15 15:{minute:02d}:00 EST.")


def has_clock(text: str) -> bool:
    """Whether ``text`` holds the policy's clock line (at any minute)."""
    return _CLOCK.search(text) is not None


def clock_relocated(body: dict[str, Any]) -> bool:
    """The clock line left the stable system prefix and sits in the volatile block after it."""
    rest = json.dumps(body.get("messages", body.get("input", [])))
    return not has_clock(system_text(body)) and VOLATILE_OPEN in rest and _CLOCK.search(rest) is not None


VOLATILE_OPEN = "<volatile_context>"


#: The OpenAI models the tests' providers name: gpt-4o (implicit prefix caching) and, as
#: ``openai_gpt56``, gpt-5.6-sol (explicit breakpoints, writes billed).
OPENAI_MODELS = {"openai": "gpt-4o", "openai_gpt56": "gpt-5.6-sol"}


def make_model(provider: str, base_url: str, api_key: str) -> BaseChatModel:
    """A real ChatOpenAI / ChatAnthropic talking to the emulator (no retries: failures surface)."""
    if provider.startswith("openai"):
        return ChatOpenAI(
            model=OPENAI_MODELS[provider],
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            stream_usage=True,
        )
    return ChatAnthropic(model="claude-sonnet-4-5", api_key=api_key, base_url=base_url, max_retries=0)


def base_url(emu: Any, provider: str) -> str:
    """The emulator's base URL for ``provider``'s SDK."""
    return str(emu.openai_base_url if provider.startswith("openai") else emu.anthropic_base_url)


def wire_format(provider: str) -> str:
    """The wire format a provider's chat model speaks."""
    return "openai-chat" if provider.startswith("openai") else "anthropic-messages"


def script_from_trajectory(traj: list[dict[str, Any]], start: int, stop: int) -> list[dict[str, Any]]:
    """The recorded assistant turns of ``traj[start:stop]`` as emulator script items."""
    items: list[dict[str, Any]] = []
    for m in traj[start:stop]:
        if m["role"] != "assistant":
            continue
        if m.get("tool_calls"):
            items.append(
                {
                    "tool_calls": [
                        {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                        for c in m["tool_calls"]
                    ]
                }
            )
        else:
            items.append({"text": m["content"]})
    return items


def recorded_tools(tool_schemas: list[dict[str, Any]], traj: list[dict[str, Any]]) -> list[StructuredTool]:
    """LangChain tools with the real airline schemas, answering with the trajectory's recorded outputs.

    Each tool returns, in order, the outputs recorded for it in ``traj`` (so the replay is the
    real conversation, tool results included).
    """
    outputs: dict[str, list[str]] = {}
    for m in traj:
        if m["role"] == "tool":
            outputs.setdefault(m["name"], []).append(m["content"])
    tools = []
    for schema in tool_schemas:
        fn = schema["function"]
        queue = list(outputs.get(fn["name"], []))

        def run(_queue: list[str] = queue, _name: str = fn["name"], **kwargs: Any) -> str:
            return _queue.pop(0) if _queue else json.dumps({"error": f"no recorded output for {_name}"})

        tools.append(
            StructuredTool.from_function(
                func=run, name=fn["name"], description=fn["description"], args_schema=fn["parameters"]
            )
        )
    return tools


def system_text(body: dict[str, Any]) -> str:
    """The (first) system text of an OpenAI Chat / Responses or Anthropic Messages body: the
    stable prefix."""
    if "system" in body:
        s = body["system"]
        return s if isinstance(s, str) else str(s[0].get("text", ""))
    first = next(m for m in body.get("messages", body.get("input", [])) if m.get("role") == "system")
    c = first["content"]
    return c if isinstance(c, str) else "".join(b.get("text", "") for b in c)


def has_cache_control(body: dict[str, Any]) -> bool:
    """Whether an Anthropic body carries at least one cache_control breakpoint."""
    return "cache_control" in json.dumps(body)
