"""Names that say the difference, and a middleware whose place in the list does not matter
(issue 20, item 10).

* ``declare_tool`` (declares side effects; the middleware serves the tool) vs ``cache_tool`` (wraps
  a tool in a cache of its own); ``PromptCacheMiddleware`` (model and tool calls) vs
  ``PromptCacheModelOnlyMiddleware`` (no tool hook). The former names ``cached_tool`` and
  ``PromptCacheModelMiddleware`` still work, with a ``DeprecationWarning``.
* ``PromptCacheMiddleware()`` first in the list works as it does last: a model swapped in by a later
  middleware (``ModelFallbackMiddleware``, a dynamic model choice) is rewritten with its own
  provider's hints, against the emulator through real ``create_agent`` agents.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import has_cache_control, make_model
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    ModelFallbackMiddleware,
    ModelRequest,
    ModelResponse,
    wrap_model_call,
)
from langchain_core.messages import AIMessage, HumanMessage
from promptcache_langchain import (
    CachingTool,
    PromptCacheMiddleware,
    PromptCacheModelMiddleware,
    PromptCacheModelOnlyMiddleware,
    cache_tool,
    cached_tool,
    declare_tool,
)

from promptcache import PromptCache

Emulator = pytest.importorskip("promptcache.lab.emulate").Emulator

airline_policy = shared.airline_policy
CFG = {"configurable": {"tenant_id": "acme"}}


# -- names ---------------------------------------------------------------------------------------


def _get(reservation_id: str) -> str:
    """Get a reservation."""
    return f'{{"reservation_id": "{reservation_id}"}}'


def test_declare_tool_is_the_new_name_and_cached_tool_warns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing
        new = declare_tool(_get, side_effect="read_only", tags=["reservation:{reservation_id}"])
        wrapped = cache_tool(new, PromptCache())
    with pytest.warns(DeprecationWarning, match="cached_tool is renamed declare_tool"):
        old = cached_tool(_get, side_effect="read_only", tags=["reservation:{reservation_id}"])
    assert old.metadata == new.metadata and old.name == new.name
    assert isinstance(wrapped, CachingTool) and not isinstance(new, CachingTool)
    with pytest.warns(DeprecationWarning):
        decorator = cached_tool(side_effect="pure")  # the decorator form too
    assert decorator(_get).metadata["promptcache"]["side_effect"] == "pure"


def test_model_only_middleware_is_the_new_name_and_the_old_one_warns() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PromptCacheModelOnlyMiddleware()
        PromptCacheMiddleware()
    with pytest.warns(DeprecationWarning, match="renamed PromptCacheModelOnlyMiddleware"):
        old = PromptCacheModelMiddleware()
    assert isinstance(old, PromptCacheModelOnlyMiddleware) and not isinstance(old, PromptCacheMiddleware)
    # The difference the names state: only PromptCacheMiddleware hooks tool calls.
    assert "wrap_tool_call" in vars(PromptCacheMiddleware)
    assert "wrap_tool_call" not in vars(PromptCacheModelOnlyMiddleware)
    assert "wrap_tool_call" not in vars(PromptCacheModelMiddleware)


# -- order ---------------------------------------------------------------------------------------


class _DynamicModel(AgentMiddleware[Any, Any]):
    """A user's dynamic model choice, as LangChain documents it: ``request.override(model=...)``."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def wrap_model_call(self, request: ModelRequest[Any], handler: Callable[..., Any]) -> Any:
        return handler(request.override(model=self.model))

    async def awrap_model_call(self, request: ModelRequest[Any], handler: Callable[..., Any]) -> Any:
        return await handler(request.override(model=self.model))


@pytest.mark.parametrize("first", [True, False], ids=["promptcache-first", "promptcache-last"])
def test_a_fallback_after_the_middleware_gets_its_own_providers_hints(
    airline_policy: str, first: bool
) -> None:
    with Emulator() as emu:
        dead = make_model("anthropic", "http://127.0.0.1:9", "k")  # nothing listens on the discard port
        fallback = make_model("openai", emu.openai_base_url, "k")
        ours = PromptCacheMiddleware()
        others = [ModelFallbackMiddleware(fallback)]
        agent = create_agent(
            dead, [], system_prompt=airline_policy, middleware=[ours, *others] if first else [*others, ours]
        )
        out = agent.invoke({"messages": [HumanMessage("Can I change my flight?")]}, CFG)
        (sent,) = emu.requests
        assert sent["prompt_cache_key"].startswith("pc-") and not has_cache_control(sent)
        assert out["cache_metrics"].calls == 1
        assert ours.cache.stats().for_tenant("acme").calls == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_model_chosen_after_the_middleware_is_rewritten(airline_policy: str, use_async: bool) -> None:
    with Emulator() as emu:
        chosen = make_model("anthropic", emu.anthropic_base_url, "k")
        primary = make_model("openai", "http://127.0.0.1:9/v1", "k")  # never called
        bodies = []
        for middleware in (
            [PromptCacheMiddleware(), _DynamicModel(chosen)],
            [_DynamicModel(chosen), PromptCacheMiddleware()],
        ):
            agent = create_agent(primary, [], system_prompt=airline_policy, middleware=middleware)
            state = {"messages": [HumanMessage("How many free bags does a gold member get?")]}
            out = await agent.ainvoke(state, CFG) if use_async else agent.invoke(state, CFG)
            assert isinstance(out["messages"][-1], AIMessage)
            assert out["cache_metrics"].calls == 1
            bodies.append(emu.requests[-1])
        first, last = bodies
        assert has_cache_control(first) and first["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert first == last  # the same request, wherever the middleware is


def test_a_call_that_bypassed_the_seam_is_noted(airline_policy: str) -> None:
    @wrap_model_call
    def answer_locally(request: ModelRequest[Any], handler: Any) -> Any:
        return ModelResponse(result=[AIMessage("from a local answer")])

    agent = create_agent(
        make_model("openai", "http://127.0.0.1:9/v1", "k"),
        [],
        middleware=[PromptCacheMiddleware(), answer_locally],
    )
    out = agent.invoke({"messages": [HumanMessage("hi")]}, CFG)
    meta = out["messages"][-1].response_metadata["promptcache"]
    assert "no request went through promptcache's seam: this call was not rewritten" in meta["notes"]


# -- the README's one line ---------------------------------------------------------------------------


def test_the_readme_leads_with_the_one_line_and_it_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    first = re.search(r"^```python\n(.*?)^```$", readme, re.DOTALL | re.MULTILINE)
    assert first is not None
    code = first.group(1)
    assert "middleware=[PromptCacheMiddleware()]" in code  # the first code a reader sees
    with Emulator() as emu:
        monkeypatch.setenv("OPENAI_BASE_URL", emu.openai_base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        exec(compile(code, "README.md", "exec"), {})
        (sent,) = emu.requests
    assert sent["prompt_cache_key"].startswith("pc-")
    summary = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["calls"] == 1
