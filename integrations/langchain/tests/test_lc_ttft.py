"""Telemetry sees each provider call: duration, and time to first token on streamed calls,
split by whether the provider served the prompt from its cache."""

from __future__ import annotations

from typing import Any

import fixtures_lc as shared
import pytest
from helpers_lc import base_url, make_model, stamp
from langchain_core.messages import HumanMessage, SystemMessage
from promptcache_langchain import CachingChatModel

from promptcache import PromptCache
from promptcache.telemetry import hooks
from promptcache.telemetry.events import ProviderCallEvent

airline_policy, emulator = shared.airline_policy, shared.emulator


class Collect:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_streamed_calls_report_ttft_with_and_without_a_cache_hit(
    provider: str, airline_policy: str, emulator: Any
) -> None:
    seen = hooks.add_observer(Collect())
    try:
        model = CachingChatModel(
            make_model(provider, base_url(emulator, provider), "key-ttft"), PromptCache()
        )
        for minute in range(3):
            messages = [SystemMessage(stamp(airline_policy, minute)), HumanMessage("Hi, I need help.")]
            chunks = list(model.stream(messages, config={"configurable": {"tenant_id": "acme"}}))
            assert chunks
        model.invoke(
            [SystemMessage(stamp(airline_policy, 3)), HumanMessage("Hi, I need help.")],
            config={"configurable": {"tenant_id": "acme"}},
        )
    finally:
        hooks.remove_observer(seen)
    calls = [e for e in seen.events if isinstance(e, ProviderCallEvent)]
    assert len(calls) == 4 and all(c.tenant == "acme" and c.provider == provider for c in calls)
    streamed, plain = calls[:3], calls[3]
    assert all(c.streaming and c.ttft_s is not None and 0 < c.ttft_s <= c.duration_s for c in streamed)
    assert not plain.streaming and plain.ttft_s is None
    # The first call misses; once the clock has moved out of the prefix, the provider hits.
    assert [c.provider_cache_hit for c in streamed] == [False, False, True]


def test_otel_spans_for_canonicalization_and_the_provider_request(airline_policy: str, emulator: Any) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from promptcache import telemetry

    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable_otel(
        tracer_provider=tp, meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()])
    )
    try:
        model = CachingChatModel(
            make_model("openai", base_url(emulator, "openai"), "key-otel"), PromptCache()
        )
        secret_question = "Where is my suitcase number 4217?"
        messages = [SystemMessage(stamp(airline_policy, 0)), HumanMessage(secret_question)]
        list(model.stream(messages, config={"configurable": {"tenant_id": "acme"}}))
    finally:
        telemetry.disable_otel()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert "promptcache.canonicalize" in spans
    chat = next(s for n, s in spans.items() if n.startswith("chat "))
    attrs = dict(chat.attributes or {})
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["promptcache.streaming"] is True
    assert attrs["gen_ai.usage.input_tokens"] > 1000 and attrs["promptcache.ttft_s"] > 0
    assert chat.end_time is not None and chat.start_time is not None and chat.end_time > chat.start_time
    # hashes, sizes and figures only: no prompt text in any exported span
    dumped = repr([(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()])
    assert secret_question not in dumped and "Airline Agent Policy" not in dumped
