"""Re-record the LlamaIndex cassettes (``VectorStoreIndex`` query engine on OpenAI, Anthropic and
Gemini; ``FunctionAgent`` with tools and structured outputs on OpenAI and Anthropic; all after
``promptcache_llamaindex.enable``) against the emulator.

    .venv/bin/python integrations/llamaindex/tests/record_cassettes_li.py [SCENARIO[:PROVIDER] ...]
    (or: cd integrations/llamaindex/tests && ../../../.venv/bin/python -m record_cassettes_li)

With no argument every cassette is re-recorded; ``structured:anthropic`` re-records one. The
set-ups are those of ``test_llamaindex_rag_agent.py`` (its FAQ corpus, its scripted
FunctionAgent turns over the tau-bench airline tools: a read, the same read again, a write
that invalidates it, a fresh read, the answer), built from ``li_fixtures``' helpers.
``test_li_cassettes.py`` replays the files with nothing listening. Not collected by pytest.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import li_shared_path  # noqa: E402, F401
from emulator_cassettes import AUTH_HEADERS, SUFFIX, emulator_vcr, isolated_cache_dir  # noqa: E402
from li_fixtures import AIRLINE_POLICY, AirlineBackend, HashEmbedding, airline_tools  # noqa: E402
from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llama_index.core.agent.workflow import FunctionAgent  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.prompts import ChatPromptTemplate  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index_instrumentation.dispatcher import instrument_tags  # noqa: E402
from promptcache_llamaindex import CachingRetriever, cache_tool, disable, enable  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from test_llamaindex_rag_agent import FAQ, _agent_script, _llm  # noqa: E402

from promptcache import PromptCache  # noqa: E402
from promptcache.artifacts import ToolOutputCache, open_store  # noqa: E402
from promptcache.lab.emulate import Emulator  # noqa: E402

CASSETTES = HERE / "cassettes"
QUESTION = "How many free checked bags does a gold member get?"
USER_MSG = "Please add one checked bag to reservation ZFA04Y."


def cassette_name(scenario: str, provider: str) -> str:
    return f"li_{scenario}_{provider}{SUFFIX}"


async def run_query_engine(provider: str, emu: Any, cache: PromptCache) -> dict[str, Any]:
    """Sync, async and streamed queries through a VectorStoreIndex query engine (tenant acme)."""
    Settings.embed_model = HashEmbedding()
    Settings.llm = _llm(provider, emu, system_prompt=AIRLINE_POLICY)
    handler = enable(cache)
    index = VectorStoreIndex.from_documents([Document(text=t) for t in FAQ])
    retriever = CachingRetriever(
        index.as_retriever(similarity_top_k=2), cache, index_version="faq-v1", store="memory://"
    )
    engine = RetrieverQueryEngine.from_args(retriever)
    streaming = RetrieverQueryEngine.from_args(retriever, streaming=True)
    with instrument_tags({"tenant_id": "acme"}):
        answers = [
            await _sync(provider, lambda: str(engine.query(QUESTION))),
            str(await engine.aquery(QUESTION)),
        ]
        answers.append(await _sync(provider, lambda: "".join(streaming.query(QUESTION).response_gen)))
    return {"handler": handler, "retriever": retriever, "answers": answers}


async def _sync(provider: str, fn: Callable[[], str]) -> str:
    # GoogleGenAI's sync methods call asyncio.run(), which refuses to run inside an event loop:
    # run them on a worker thread (it copies the context, instrumentation tags included).
    return await asyncio.to_thread(fn) if provider == "gemini" else fn()


async def run_function_agent(provider: str, emu: Any, cache: PromptCache) -> dict[str, Any]:
    """A FunctionAgent over the airline tools, reads cached and invalidated by a write (tenant mia)."""
    backend = AirlineBackend()
    raw = airline_tools(backend)
    shared = ToolOutputCache(open_store("memory://"), cache.policy)
    tools = [
        cache_tool(
            raw["get_reservation_details"],
            cache,
            side_effect="read_only",
            tags=["reservation:{reservation_id}"],
            tool_cache=shared,
        ),
        cache_tool(
            raw["update_reservation_baggages"],
            cache,
            side_effect="idempotent_write",
            invalidates=["reservation:{reservation_id}"],
            tool_cache=shared,
        ),
        *(
            cache_tool(t, cache, tool_cache=shared)
            for n, t in raw.items()
            if not n.endswith("_baggages") and n != "get_reservation_details"
        ),
    ]
    Settings.llm = _llm(provider, emu)
    handler = enable(cache)
    agent = FunctionAgent(tools=tools, system_prompt=AIRLINE_POLICY)
    with instrument_tags({"tenant_id": "mia"}):
        result = await agent.run(user_msg=USER_MSG)
    return {"handler": handler, "backend": backend, "result": str(result)}


class Fare(BaseModel):
    """A fare quoted for one route."""

    route: str
    fare_usd: int


FARE_JSON = '{"route": "SFO-JFK", "fare_usd": 210}'
FARE_PROMPT = ChatPromptTemplate(
    message_templates=[
        ChatMessage(role="system", content=AIRLINE_POLICY),
        ChatMessage(role="user", content="Extract the quoted fare from: {text}"),
    ]
)
FARE_TEXT = "The agent quoted 210 dollars for the SFO-JFK flight."


def _fare_script() -> list[dict[str, Any]]:
    return [{"text": FARE_JSON}] * 4


async def run_structured(provider: str, emu: Any, cache: PromptCache) -> dict[str, Any]:
    """structured_predict, its async and streamed twins and as_structured_llm (tenant acme)."""
    Settings.llm = _llm(provider, emu)
    handler = enable(cache)
    llm = Settings.llm
    with instrument_tags({"tenant_id": "acme"}):
        results: list[Any] = [llm.structured_predict(Fare, FARE_PROMPT, text=FARE_TEXT)]
        results.append(await llm.astructured_predict(Fare, FARE_PROMPT, text=FARE_TEXT))
        results.append(list(llm.stream_structured_predict(Fare, FARE_PROMPT, text=FARE_TEXT))[-1])
        messages = FARE_PROMPT.format_messages(text=FARE_TEXT)
        reply = llm.as_structured_llm(Fare).chat(messages)
        results.append(reply.raw)
    return {"handler": handler, "results": results, "messages": messages}


SCENARIOS = {
    "query_engine": (run_query_engine, None, ("openai", "anthropic", "gemini")),
    "function_agent": (
        run_function_agent,
        _agent_script,
        ("openai", "anthropic", "openai_gpt56", "responses_gpt56"),
    ),
    "structured": (run_structured, _fare_script, ("openai", "anthropic")),
}


def record(scenario: str, provider: str) -> Path:
    run, script, _ = SCENARIOS[scenario]
    path = CASSETTES / cassette_name(scenario, provider)
    path.unlink(missing_ok=True)  # record_mode "all" would append to it
    with Emulator(script=script() if script else None) as emu:
        # google-genai sends its key as x-goog-api-key, which the shared list does not name.
        with emulator_vcr(CASSETTES, record_mode="all").use_cassette(
            path.name, filter_headers=[*AUTH_HEADERS, "x-goog-api-key"]
        ):
            asyncio.run(run(provider, emu, PromptCache()))
        disable(Settings)
    return path


def main(args: list[str]) -> None:
    isolated_cache_dir(tempfile.mkdtemp(prefix="promptcache-rec-"))
    Settings.embed_model = HashEmbedding()  # never the default OpenAI embedding (network)
    for scenario, (_, _, providers) in SCENARIOS.items():
        for provider in providers:
            if not args or scenario in args or f"{scenario}:{provider}" in args:
                print("recorded", record(scenario, provider))


if __name__ == "__main__":
    main(sys.argv[1:])
