"""Instruction-like tool/retrieved content, cached and served again, never lands in a trusted part."""

from __future__ import annotations

import json

import pytest

from benchmarks import reliability_corpus as corpus
from promptcache import PromptCache
from promptcache.artifacts import RetrieverSpec, ToolSpec
from promptcache.blocks import Block, Trust
from promptcache.tiers.router import TieredStore

from . import _path  # noqa: F401

MARK = "ZZINJ"


@pytest.mark.parametrize("fmt", corpus.FORMATS)
def test_cached_injection_never_in_trusted_part(fmt: str) -> None:
    cache = PromptCache(store=TieredStore())
    read = ToolSpec(name="get_reservation", side_effect="read_only", ttl=3600)
    kb = RetrieverSpec(name="kb", index_version="1", ttl=3600)
    hits = 0
    for i, text in enumerate(corpus.injection_texts(MARK)):
        for rnd in range(2):
            tool = cache.tools.call(read, {"i": i}, lambda i, t=text: {"result": t}, tenant="acme")
            docs = cache.retrieval.retrieve(
                f"q{i}", lambda q, t=text: [{"id": "d", "text": t}], tenant="acme", retriever=kb
            )
            hits += tool.lookup.hit + docs.lookup.hit
            assert tool.trust == docs.trust == "untrusted"
            body = corpus.agent_body(fmt, tool.value["result"], docs.value[0]["text"], user=f"turn {rnd}")
            p = cache.prepare_request(body, format=fmt, tenant="acme")
            assert MARK not in json.dumps(corpus.trusted_parts(fmt, p.body))
            assert json.dumps(p.body).count(MARK) >= 4  # nothing dropped
            for b, sec in zip(p.plan.blocks, p.plan.sections, strict=True):
                if MARK in json.dumps(b.content):
                    assert sec not in ("static", "session")
                    assert b.kind.value not in ("system", "developer", "tool_schema", "context")
    assert hits == 2 * len(corpus.INJECTIONS)  # the second round was served from cache


def test_plan_keeps_untrusted_blocks_out_of_trusted_sections() -> None:
    cache = PromptCache()
    for text in corpus.injection_texts(MARK):
        plan = cache.plan(
            [
                Block(kind="system", content=corpus.SYSTEM_PROMPT),
                Block(kind="retrieval", content=text, stability="static"),
                Block(kind="retrieval", content=text),
                Block(kind="tool_result", content={"r": text}),
                Block(kind="user", content="hi"),
            ],
            model="gpt-4o",
            tenant="acme",
        )
        for b, sec in zip(plan.blocks, plan.sections, strict=True):
            if MARK in json.dumps(b.content):
                assert b.trust is Trust.UNTRUSTED and sec not in ("static", "session")
