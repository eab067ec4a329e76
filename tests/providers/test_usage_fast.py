"""The direct read of usual OpenAI/Anthropic usage shapes, against the general parser.

``usage_from_response`` reads plain usage objects (integer counts, the documented sub-objects)
itself and leaves every other shape to the general parser. Wherever the direct read answers, it
must be exactly what the parser gives for the same usage (the same values, the same fields set);
wherever the parser would refuse or convert a value, the direct read must not answer at all.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import CacheUsage, WireFormat, usage_from_response
from promptcache.providers import usage as usage_module

_MISSING = object()

# Values a provider (or a proxy in front of one) might put where a count belongs.
_VALUE = st.one_of(
    st.integers(0, 50_000),
    st.integers(0, 50_000),
    st.integers(-3, 3),
    st.none(),
    st.booleans(),
    st.sampled_from([0.0, 12.0, 1.5, "7", [], {}]),
    st.just(_MISSING),
)


def _obj(keys: list[str]) -> st.SearchStrategy[Any]:
    def build(values: list[Any]) -> dict[str, Any]:
        return {k: v for k, v in zip(keys, values, strict=True) if v is not _MISSING}

    return st.lists(_VALUE, min_size=len(keys), max_size=len(keys)).map(build)


def _sub(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(_obj(keys), st.none(), st.just(_MISSING), st.sampled_from([[], "x", 3]))


def _with(base: st.SearchStrategy[dict[str, Any]], **subs: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def build(parts: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        top, nested = parts
        return {**top, **{k: v for k, v in nested.items() if v is not _MISSING}}

    return st.tuples(base, st.fixed_dictionaries(subs)).map(build)


_OPENAI_CHAT = _with(
    _obj(["prompt_tokens", "completion_tokens", "total_tokens"]),
    prompt_tokens_details=_sub(["cached_tokens", "cache_write_tokens", "audio_tokens"]),
    completion_tokens_details=_sub(["reasoning_tokens", "audio_tokens"]),
)
_OPENAI_RESPONSES = _with(
    _obj(["input_tokens", "output_tokens", "total_tokens"]),
    input_tokens_details=_sub(["cached_tokens", "cache_write_tokens"]),
    output_tokens_details=_sub(["reasoning_tokens"]),
)
_ANTHROPIC = _with(
    _obj(["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]),
    cache_creation=_sub(
        ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens", "ephemeral_30m_input_tokens"]
    ),
)
_SHAPES = st.one_of(
    st.tuples(st.just(WireFormat.OPENAI_CHAT), _OPENAI_CHAT),
    st.tuples(st.just(WireFormat.OPENAI_RESPONSES), _OPENAI_RESPONSES),
    st.tuples(st.just(WireFormat.ANTHROPIC_MESSAGES), _ANTHROPIC),
)
_MODEL = st.sampled_from([None, "gpt-4o-2024-08-06", "claude-sonnet-4-5"])


def _parsed(fmt: WireFormat, raw: dict[str, Any], model: str | None) -> CacheUsage | None:
    """What the general parser makes of ``raw`` (None: it refuses it)."""
    try:
        return usage_module._parse(
            fmt, {"model": model, "usage": dict(raw)}, model=model, provider=fmt.provider
        )
    except ValueError:
        return None


def _same(a: CacheUsage, b: CacheUsage) -> None:
    assert type(a) is type(b) is CacheUsage
    assert a == b
    assert list(a.__dict__.items()) == list(b.__dict__.items())
    assert a.model_fields_set == b.model_fields_set
    assert a.model_dump(exclude_unset=True) == b.model_dump(exclude_unset=True)
    assert repr(a) == repr(b)


@settings(max_examples=1500, deadline=None)
@given(_SHAPES, _MODEL)
def test_direct_read_answers_only_as_the_parser_does(
    shape: tuple[WireFormat, dict[str, Any]], model: str | None
) -> None:
    fmt, raw = shape
    fast = usage_module._fast_usage(fmt, raw, model, fmt.provider)
    if fast is not None:
        parsed = _parsed(fmt, raw, model)
        assert parsed is not None, "the direct read accepted usage the parser refuses"
        _same(fast, parsed)


@settings(max_examples=300, deadline=None)
@given(_SHAPES, _MODEL)
def test_usage_from_response_is_the_parser(
    shape: tuple[WireFormat, dict[str, Any]], model: str | None
) -> None:
    fmt, raw = shape
    parsed = _parsed(fmt, raw, model)
    try:
        got: CacheUsage | None = usage_from_response(fmt, {"model": model, "usage": raw}, model=model)
    except ValueError:
        got = None
    if parsed is None:
        assert got is None
    else:
        assert got is not None
        _same(got, parsed)


def test_the_usual_answers_are_read_directly() -> None:
    # The shapes the providers send: the direct read must answer for them, or the tests above
    # would pass without testing it.
    openai = {
        "prompt_tokens": 16_000,
        "completion_tokens": 2,
        "total_tokens": 16_002,
        "prompt_tokens_details": {"cached_tokens": 15_872, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    anthropic = {
        "input_tokens": 3,
        "cache_read_input_tokens": 1111,
        "cache_creation_input_tokens": 403,
        "cache_creation": {"ephemeral_5m_input_tokens": 403, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 33,
    }
    responses = {
        "input_tokens": 1420,
        "output_tokens": 100,
        "input_tokens_details": {"cached_tokens": 1280},
        "output_tokens_details": {"reasoning_tokens": 40},
    }
    for fmt, raw in (
        (WireFormat.OPENAI_CHAT, openai),
        (WireFormat.ANTHROPIC_MESSAGES, anthropic),
        (WireFormat.OPENAI_RESPONSES, responses),
    ):
        fast = usage_module._fast_usage(fmt, raw, "m", fmt.provider)
        assert fast is not None, fmt
        parsed = _parsed(fmt, raw, "m")
        assert parsed is not None
        _same(fast, parsed)
