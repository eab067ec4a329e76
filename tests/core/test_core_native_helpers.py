"""The small native helpers of the warm path give what their Python forms give.

``unchecked`` (a pydantic model from checked values) and ``first_without_role`` (the wire
adapters' message check) run in ``promptcache._speedups`` when it was built; an install
without it runs the Python forms. Both are compared here on the models and messages the
engine meets, and on the odd inputs a caller can send.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import WireFormat
from promptcache.blocks import Block, BlockKind, Stability, Trust, trusted_block
from promptcache.metrics import CallFigures, figures_from_usage
from promptcache.unchecked import _unchecked_py
from promptcache.usage import CacheUsage
from promptcache.wire import WireFormatError, _first_without_role_py, get_adapter

try:
    from promptcache import _speedups
except ImportError:  # pragma: no cover - the test below says why
    _speedups = None  # type: ignore[assignment]

native = pytest.mark.skipif(_speedups is None, reason="promptcache._speedups not built")


def _state(m: Any) -> tuple[Any, ...]:
    return (type(m), m.__dict__, m.model_fields_set, m.__pydantic_extra__, m.__pydantic_private__)


@native
@pytest.mark.parametrize("fields_set", [None, {"provider", "input_tokens"}])
def test_native_unchecked_builds_what_the_python_form_builds(fields_set: set[str] | None) -> None:
    values = CacheUsage(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1).__dict__
    a = _speedups.unchecked(CacheUsage, dict(values), fields_set, None)
    b = _unchecked_py(CacheUsage, dict(values), fields_set, None)
    assert _state(a) == _state(b)
    assert a == CacheUsage.model_validate(values)
    assert a.model_fields_set == (set(values) if fields_set is None else fields_set)
    # The values are held as given, not copied: callers hand over a dict they made.
    given_values = dict(values)
    assert _speedups.unchecked(CacheUsage, given_values, None, None).__dict__ is given_values


@native
def test_native_unchecked_sets_private_attributes() -> None:
    from promptcache import PromptCache
    from promptcache.plan import Plan

    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    body = {"model": "gpt-4o", "messages": msgs}
    plan = PromptCache().prepare_request(body, format="openai-chat", tenant="t").plan
    private = {"_contract": None, "_snapshot": None, "_previous": None}
    a = _speedups.unchecked(Plan, dict(plan.__dict__), None, dict(private))
    b = _unchecked_py(Plan, dict(plan.__dict__), None, dict(private))
    assert _state(a) == _state(b)
    assert a.model_dump() == plan.model_dump()


@native
def test_native_unchecked_refuses_what_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="cls must be a class"):
        _speedups.unchecked("CacheUsage", {}, None, None)
    with pytest.raises(TypeError, match="values must be a dict"):
        _speedups.unchecked(CacheUsage, [("provider", "x")], None, None)
    with pytest.raises(TypeError):
        _speedups.unchecked(CacheUsage, {})  # type: ignore[call-arg]


def test_the_models_of_a_warm_call_equal_their_validated_forms() -> None:
    # What the engine and the integrations build through unchecked, native or not.
    block = trusted_block(
        BlockKind.USER, {"role": "user", "content": "hi"}, trust=Trust.TRUSTED, stability=Stability.VOLATILE
    )
    assert block == Block(
        kind=BlockKind.USER,
        content={"role": "user", "content": "hi"},
        trust=Trust.TRUSTED,
        stability=Stability.VOLATILE,
    )
    assert block.model_fields_set == {"kind", "content"}
    usage = CacheUsage(
        provider="openai", model="gpt-4o-2024-08-06", input_tokens=16_000, cache_read_tokens=15_872
    )
    fig = figures_from_usage(usage, call_id="c1", tenant="acme")
    assert fig == CallFigures.model_validate(fig.model_dump())
    assert fig.priced and fig.cost_avoided_nusd > 0


# -- first_without_role ------------------------------------------------------------------------


class _Contains(dict[str, Any]):
    """A dict that claims every key (``in``) but has none: its own methods must decide."""

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: str, default: Any = None) -> Any:
        return "user"


messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", 3, None])}),
        st.fixed_dictionaries({"content": st.text(max_size=3)}),
        st.builds(_Contains),
        st.sampled_from([None, "user", 1, ["role"], ("role",)]),
    ),
    max_size=6,
)

IMPLS = [("python", _first_without_role_py)]
if _speedups is not None:
    IMPLS.append(("native", _speedups.first_without_role))


@pytest.mark.parametrize("impl", [i[1] for i in IMPLS], ids=[i[0] for i in IMPLS])
@settings(max_examples=300, deadline=None)
@given(msgs=messages, roles=st.sampled_from([None, ("user", "assistant")]))
def test_first_without_role_finds_the_first_bad_message(impl: Any, msgs: list[Any], roles: Any) -> None:
    expected = next(
        (
            j
            for j, m in enumerate(msgs)
            if not isinstance(m, dict) or ("role" not in m if roles is None else m.get("role") not in roles)
        ),
        -1,
    )
    assert impl(msgs, roles) == expected


@native
def test_native_helpers_name_their_wrong_arguments() -> None:
    with pytest.raises(TypeError, match=r"first_without_role\(\): messages must be a list"):
        _speedups.first_without_role(({"role": "user"},), None)
    with pytest.raises(TypeError, match=r"first_without_role\(\) takes exactly 2 arguments \(1 given\)"):
        _speedups.first_without_role([])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"stamp_holds\(\) takes exactly 2 arguments \(1 given\)"):
        _speedups.stamp_holds({})  # type: ignore[call-arg]
    assert _speedups.dict_stamp([]) is None  # type: ignore[arg-type]
    assert _speedups.stamp_holds({}, b"short") is False


@pytest.mark.parametrize(
    ("fmt", "body", "error"),
    [
        (
            WireFormat.OPENAI_CHAT,
            {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user"}, {"x": 1}]},
            r"messages\[2\] must be an object with a 'role'",
        ),
        (
            WireFormat.ANTHROPIC_MESSAGES,
            {"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "system"}]},
            r"messages\[1\]\.role must be 'user' or 'assistant'",
        ),
        (
            WireFormat.BEDROCK_CONVERSE,
            {"modelId": "m", "messages": ["user"]},
            r"messages\[0\]\.role must be 'user' or 'assistant'",
        ),
    ],
)
def test_the_adapters_name_the_first_message_without_a_role(
    fmt: WireFormat, body: dict[str, Any], error: str
) -> None:
    with pytest.raises(WireFormatError, match=error):
        get_adapter(fmt).split(body)
