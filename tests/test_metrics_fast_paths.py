"""The call path's shortcuts in ``promptcache.metrics`` and the usage parser give what the general
code gives: the empty value, a one-call value, the typed merge, a plain-dict response body."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from promptcache.metrics import CacheMetrics, CallFigures, figures_from_usage, merge_cache_metrics
from promptcache.providers.usage import usage_from_response
from promptcache.usage import CacheUsage


def _figures(call_id: str, read: int = 1280) -> CallFigures:
    usage = CacheUsage(
        provider="openai", model="gpt-4o", input_tokens=1420, cache_read_tokens=read, output_tokens=100
    )
    return figures_from_usage(usage, call_id=call_id, tenant="acme")


def _same(a: CacheMetrics, b: CacheMetrics) -> None:
    assert type(a) is type(b) is CacheMetrics
    assert dict(a) == dict(b)
    assert a.records == b.records
    assert a.model_dump() == b.model_dump()
    assert a.summary() == b.summary()


def test_empty_value_is_the_general_empty_value() -> None:
    general = CacheMetrics.model_validate({"records": {}})
    for empty in (CacheMetrics(), CacheMetrics(None), CacheMetrics({})):
        _same(empty, general)
        assert dict(empty) == {"records": {}}
        with pytest.raises(TypeError):
            empty["records"] = {}


def test_of_call_is_the_one_record_value() -> None:
    f = _figures("run-1")
    one = CacheMetrics.of_call(f)
    _same(one, CacheMetrics({"run-1": f}))
    _same(one, CacheMetrics.model_validate({"records": {"run-1": f.model_dump(mode="json")}}))
    # Its plain records are its own: editing the figures' dict form elsewhere changes nothing.
    assert one["records"]["run-1"] is not f.__dict__


@pytest.mark.parametrize("swap", [False, True])
def test_typed_merge_is_the_plain_merge(swap: bool) -> None:
    a = CacheMetrics({"r1": _figures("r1"), "r2": _figures("r2")})
    b = CacheMetrics.of_call(_figures("r3"))
    # Two different records under one id: the merge picks the same one from either side.
    c = CacheMetrics.of_call(_figures("r1", read=1000))
    for left, right in ((a, b), (a, c), (CacheMetrics(), b), (a, CacheMetrics()), (a, a)):
        if swap:
            left, right = right, left
        typed = merge_cache_metrics(left, right)
        plain = merge_cache_metrics(left.model_dump(), right.model_dump())
        _same(typed, plain)


def test_usage_body_any_mapping_as_a_dict() -> None:
    body = {"model": "gpt-4o", "usage": {"prompt_tokens": 1420, "completion_tokens": 100}}
    assert usage_from_response("openai-chat", MappingProxyType(body)) == usage_from_response(
        "openai-chat", body
    )
    with pytest.raises(ValueError, match="body must be a JSON object"):
        usage_from_response("openai-chat", [body])  # type: ignore[arg-type]
