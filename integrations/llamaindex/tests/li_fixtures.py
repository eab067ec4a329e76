"""Fixtures: the provider emulator over loopback, real LlamaIndex LLM objects pointed at it, a local
deterministic embedding (no network, no model weights) and the tau-bench airline agent fixtures.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.genai import types as genai_types
from llama_index.core import Settings
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.tools import FunctionTool
from llama_index.llms.anthropic import Anthropic
from llama_index.llms.google_genai import GoogleGenAI
from llama_index.llms.openai import OpenAI, OpenAIResponses
from promptcache_llamaindex import disable
from pydantic import BaseModel, ConfigDict

from promptcache import PromptCache
from promptcache.lab.bundled import AGENTS
from promptcache.lab.emulate import Emulator

ANTHROPIC_MODEL = "claude-sonnet-4-5"
OPENAI_MODEL = "gpt-4o"
GEMINI_MODEL = "gemini-2.5-flash"


def _fixture(name: str) -> Path:
    return AGENTS / name


AIRLINE_POLICY = _fixture("tau_bench_airline_system_prompt.md").read_text()
AIRLINE_TOOLS: list[dict[str, Any]] = json.loads(_fixture("tau_bench_airline_tools.json").read_text())


class HashEmbedding(BaseEmbedding):
    """Hashing bag-of-words embedding: deterministic, local, good enough to rank by word overlap."""

    dim: int = 256

    @classmethod
    def class_name(cls) -> str:
        return "HashEmbedding"

    def _vec(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big")
            v[h % self.dim] += 1.0
        n = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / n for x in v]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vec(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vec(text)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


@pytest.fixture
def cache() -> PromptCache:
    return PromptCache()


@pytest.fixture(autouse=True)
def _clean_settings() -> Iterator[None]:
    """Each test starts and ends with LlamaIndex's global Settings and dispatcher as it found them."""
    root = get_dispatcher()
    handlers = list(root.event_handlers)
    llm, embed = Settings._llm, Settings._embed_model
    yield
    disable(Settings)
    Settings._llm, Settings._embed_model = llm, embed
    root.event_handlers = handlers


def anthropic_llm(emu: Emulator, model: str = ANTHROPIC_MODEL, **kw: Any) -> Anthropic:
    return Anthropic(model=model, base_url=emu.anthropic_base_url, api_key="sk-ant-test", max_retries=0, **kw)


def openai_llm(emu: Emulator, model: str = OPENAI_MODEL, **kw: Any) -> OpenAI:
    return OpenAI(model=model, api_base=emu.openai_base_url, api_key="sk-test", max_retries=0, **kw)


def responses_llm(emu: Emulator, model: str = OPENAI_MODEL, **kw: Any) -> OpenAIResponses:
    return OpenAIResponses(model=model, api_base=emu.openai_base_url, api_key="sk-test", max_retries=0, **kw)


def gemini_llm(emu: Emulator, model: str = GEMINI_MODEL, **kw: Any) -> GoogleGenAI:
    # Token limits given, so the constructor asks the server nothing; v1beta named, so recorded
    # paths do not depend on the SDK's default API version.
    kw.setdefault("max_tokens", 512)
    kw.setdefault("context_window", 1_000_000)
    return GoogleGenAI(
        model=model,
        api_key="sk-test",
        max_retries=0,
        http_options=genai_types.HttpOptions(base_url=emu.base_url, api_version="v1beta"),
        **kw,
    )


def _schema_model(name: str, schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model that reports the fixture's JSON schema verbatim (what the model is shown)."""

    class Args(BaseModel):
        model_config = ConfigDict(extra="allow")

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return schema

    Args.__name__ = Args.__qualname__ = f"{name}_args"
    return Args


class AirlineBackend:
    """A tiny in-memory airline: enough state to tell a cached read from a fresh one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bags: dict[str, int] = {"ZFA04Y": 1}

    def __call__(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if name == "get_reservation_details":
            rid = kwargs["reservation_id"]
            return {"reservation_id": rid, "user_id": "mia_li_3668", "total_baggages": self.bags.get(rid, 0)}
        if name == "update_reservation_baggages":
            self.bags[kwargs["reservation_id"]] = int(kwargs["total_baggages"])
            return {
                "reservation_id": kwargs["reservation_id"],
                "total_baggages": self.bags[kwargs["reservation_id"]],
            }
        return {"ok": True, "tool": name}


def airline_tools(backend: AirlineBackend) -> dict[str, FunctionTool]:
    """Every tau-bench airline tool, with its real name, description and schema."""
    out: dict[str, FunctionTool] = {}
    for spec in AIRLINE_TOOLS:
        fn_spec = spec["function"]
        name = fn_spec["name"]

        def fn(_name: str = name, **kwargs: Any) -> str:
            return json.dumps(backend(_name, kwargs), sort_keys=True)

        out[name] = FunctionTool.from_defaults(
            fn=fn,
            name=name,
            description=fn_spec["description"],
            fn_schema=_schema_model(name, fn_spec["parameters"]),
        )
    return out
