"""Telemetry: exact span names and attributes (in-memory OTel exporter), metrics, no prompt text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from promptcache import telemetry
from promptcache.artifacts import ToolSpec
from promptcache.engine import PromptCache
from promptcache.pseudonym import tenant_label
from promptcache.telemetry import hooks
from promptcache.usage import CacheUsage

SECRET_PROMPT = "Zanzibar-policy-7 says refunds need a manager"
USER_TEXT = "my booking code is QX7TRP please"
TOOL_RESULT = "flight HAT170 departs at gate 42"


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    telemetry.enable_otel(tracer_provider=tp, meter_provider=mp)
    try:
        yield spans, reader
    finally:
        telemetry.disable_otel()
        telemetry.configure(capture_content=False)


def _body(clock: str) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": f"{SECRET_PROMPT}.\nCurrent time: 2024-05-15 {clock} EST\n" + "Be kind. " * 1200,
        "tools": [
            {"name": "get_flight", "description": "Look up a flight", "input_schema": {"type": "object"}}
        ],
        "messages": [{"role": "user", "content": USER_TEXT}],
    }


def _run(cache: PromptCache) -> None:
    for clock in ("10:00:00", "10:05:00", "10:09:30"):
        with telemetry.labels(agent="planner"):
            cache.prepare_request(_body(clock), format="anthropic-messages", tenant="acme")
    usage = CacheUsage(
        provider="anthropic", model="claude-sonnet-4-5", input_tokens=2000, cache_read_tokens=1500,
        cache_write_tokens=400, output_tokens=20,
    )  # fmt: skip
    with telemetry.provider_call(
        provider="anthropic", model="claude-sonnet-4-5", tenant="acme", streaming=True
    ) as c:
        c.first_chunk()
        c.set_usage(usage)
    cache.record_usage(usage, tenant="acme")
    spec = ToolSpec(name="get_flight", side_effect="read_only")
    for _ in range(2):
        cache.tools.call(spec, {"code": "QX7TRP"}, lambda code: TOOL_RESULT, tenant="acme")
    cache.tools.call(ToolSpec(name="book"), {"code": "QX7TRP"}, lambda code: "booked", tenant="acme")


def _dump(spans: InMemorySpanExporter, reader: InMemoryMetricReader) -> str:
    data = [json.loads(s.to_json()) for s in spans.get_finished_spans()]
    metrics = reader.get_metrics_data()
    assert metrics is not None
    return json.dumps(data) + metrics.to_json()


def test_span_names_and_attributes_are_exact(otel: Any) -> None:
    spans, _reader = otel
    cache = telemetry.instrument(PromptCache(store="memory://"))
    _run(cache)
    names = [s.name for s in spans.get_finished_spans() if s.name != "promptcache.canonicalize"]
    assert names[:3] == ["promptcache.prepare_request"] * 3
    # canonicalization (layout, canonical form, relocation, keys, hints) is a child of each
    canon = [s for s in spans.get_finished_spans() if s.name == "promptcache.canonicalize"]
    parents = {
        s.context.span_id for s in spans.get_finished_spans() if s.name == "promptcache.prepare_request"
    }
    assert len(canon) == 3 and all(c.parent is not None and c.parent.span_id in parents for c in canon)
    assert "chat claude-sonnet-4-5" in names
    assert "promptcache.artifact tool_output" in names
    assert "promptcache.lookup" in names and "promptcache.write" in names

    prep = [s for s in spans.get_finished_spans() if s.name == "promptcache.prepare_request"]
    a = dict(prep[2].attributes or {})
    assert set(a) == {
        "gen_ai.request.model", "promptcache.tenant", "promptcache.agent", "promptcache.format",
        "promptcache.mode", "promptcache.prefix_key", "promptcache.family", "promptcache.blocks",
        "promptcache.prefix_blocks", "promptcache.relocated", "promptcache.hints",
        "promptcache.prefix_changed", "promptcache.miss_reasons",
    }  # fmt: skip
    assert a["gen_ai.request.model"] == "claude-sonnet-4-5" and a["promptcache.agent"] == "planner"
    assert a["promptcache.tenant"] == tenant_label("acme") and a["promptcache.format"] == "anthropic-messages"
    assert len(str(a["promptcache.prefix_key"])) == 64  # a SHA-256, not text
    assert a["promptcache.relocated"] == 1  # the clock line, once the family has seen it move
    assert "cache_control" in tuple(a["promptcache.hints"])
    first = dict(prep[0].attributes or {})
    assert first["promptcache.miss_reasons"] == ("first_request",) and first["promptcache.prefix_changed"]

    (chat,) = [s for s in spans.get_finished_spans() if s.name == "chat claude-sonnet-4-5"]
    c = dict(chat.attributes or {})
    assert c["gen_ai.operation.name"] == "chat" and c["gen_ai.provider.name"] == "anthropic"
    assert c["gen_ai.usage.input_tokens"] == 2000 and c["gen_ai.usage.output_tokens"] == 20
    assert c["gen_ai.usage.cache_read.input_tokens"] == 1500
    assert c["gen_ai.usage.cache_creation.input_tokens"] == 400
    assert c["promptcache.provider_cache_hit"] is True and c["promptcache.streaming"] is True
    assert chat.kind.name == "CLIENT"

    tools = [
        dict(s.attributes or {})
        for s in spans.get_finished_spans()
        if s.name.startswith("promptcache.artifact")
    ]
    assert [(t["promptcache.hit"], t["promptcache.denied"]) for t in tools] == [
        (False, False), (True, False), (False, True),
    ]  # fmt: skip
    assert tools[1]["promptcache.tier"] == "l1"
    # The label is the reason's enum value; the lookup's own words stay on the span, values blanked.
    assert tools[2]["promptcache.reason"] == "side_effect"
    assert tools[2]["promptcache.reason.detail"] == "side effects: never served from cache (side_effecting)"
    # The tier lookup and write-back are children of the artifact call.
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    write = next(s for s in spans.get_finished_spans() if s.name == "promptcache.write")
    assert write.parent is not None and by_id[write.parent.span_id].name == "promptcache.artifact tool_output"


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def test_metrics_follow_the_genai_names_and_count_right(otel: Any) -> None:
    _spans, reader = otel
    _run(telemetry.instrument(PromptCache(store="memory://")))
    pts = _points(reader)
    usage = {p.attributes["gen_ai.token.type"]: p.sum for p in pts["gen_ai.client.token.usage"]}
    assert usage == {"input": 2000, "output": 20}
    ttfc = pts["gen_ai.client.operation.time_to_first_chunk"]
    assert len(ttfc) == 1 and ttfc[0].attributes["promptcache.provider_cache_hit"] is True
    tokens = {p.attributes["promptcache.token.kind"]: p.value for p in pts["promptcache.tokens"]}
    assert tokens == {"input": 2000, "cache_read": 1500, "cache_write": 400, "output": 20}
    lookups = {p.attributes["promptcache.result"]: p.value for p in pts["promptcache.lookups"]}
    assert lookups == {"miss": 1, "hit": 1, "denied": 1}
    (denial,) = pts["promptcache.policy.denials"]
    assert denial.attributes["promptcache.reason"] == "side_effect"
    prepared = {
        p.attributes["promptcache.prefix_changed"]: p.value for p in pts["promptcache.prepare.requests"]
    }
    assert sum(prepared.values()) == 3
    assert sum(p.value for p in pts["promptcache.relocated"]) >= 1
    cost = {p.attributes["promptcache.cost.kind"]: p.value for p in pts["promptcache.cost"]}
    assert cost["spent"] > 0 and cost["avoided"] > 0


def test_no_prompt_text_in_any_exported_span_or_metric(otel: Any) -> None:
    spans, reader = otel
    _run(telemetry.instrument(PromptCache(store="memory://")))
    dumped = _dump(spans, reader)
    for needle in (
        SECRET_PROMPT,
        "Zanzibar",
        USER_TEXT,
        "QX7TRP",
        TOOL_RESULT,
        "HAT170",
        "Be kind",
        "10:05:00",
    ):
        assert needle not in dumped, needle
    assert "promptcache.content" not in dumped


def test_capture_content_is_an_explicit_opt_in(otel: Any) -> None:
    spans, _ = otel
    telemetry.configure(capture_content=True)
    telemetry.instrument(PromptCache()).prepare_request(_body("1"), format="anthropic-messages", tenant="t")
    (s,) = [x for x in spans.get_finished_spans() if x.name == "promptcache.prepare_request"]
    assert len(str((s.attributes or {})["promptcache.content.body_sha256"])) == 64


def test_nothing_listens_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hooks.enabled()
    cache = telemetry.instrument(PromptCache())

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("instrumentation ran with nothing listening")

    monkeypatch.setattr("promptcache.telemetry.instrumentation.prepare_event", boom)
    out = cache.prepare_request(_body("1"), format="anthropic-messages", tenant="t")
    assert out.plan.tenant == "t"
    assert hooks.span("x").__enter__() is hooks.NOOP_SPAN


def test_instrument_is_idempotent_and_reversible() -> None:
    cache = PromptCache()
    cls = type(cache)
    assert telemetry.instrument(telemetry.instrument(cache)) is cache
    assert telemetry.is_instrumented(cache) and isinstance(cache, cls)
    telemetry.uninstrument(cache)
    assert type(cache) is cls


def test_a_failing_observer_never_fails_the_call() -> None:
    class Broken:
        def on_event(self, event: Any) -> None:
            raise RuntimeError("exporter down")

    obs = telemetry.add_observer(Broken())
    try:
        out = telemetry.instrument(PromptCache()).prepare_request(_body("1"), format="anthropic-messages")
        assert out.body["messages"]
    finally:
        telemetry.remove_observer(obs)
