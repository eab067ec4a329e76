"""Records of JSON-like values (``promptcache.fingerprint``): ``same`` is true only when the
value still serializes to the bytes (key order included) it had when the record was taken.

Values are mutated in place the ways a caller can: a nested value replaced, a
key added or removed, a list appended to or reordered, a number changed to an equal
number of another type (``1 == 1.0 == True``, ``0.0 == -0.0``).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache import fingerprint

IMPLS: list[tuple[str, Callable[[Any], Any], Callable[[Any, Any], bool], Callable[[Any, Any], int]]] = [
    ("python", fingerprint.py_take, fingerprint.py_same, fingerprint.py_common_prefix)
]
IDS = [i[0] for i in IMPLS]

LEAVES: list[Any] = [0, 0.0, -0.0, 1, 1.0, True, False, None, "", "x", "é", 2**63, 1e16, -5]


def containers(v: Any) -> list[Any]:
    """The dicts and lists inside ``v`` (reached through tuples too)."""
    out: list[Any] = []
    if isinstance(v, dict | list):
        out.append(v)
    if isinstance(v, dict | list | tuple):
        for x in v.values() if isinstance(v, dict) else v:
            out += containers(x)
    return out


def mutate(v: Any, rng: random.Random) -> bool:
    """Mutate some dict or list inside ``v`` in place; False when it has none."""
    conts = containers(v)
    if not conts:
        return False
    c = rng.choice(conts)
    new = rng.choice([*LEAVES, [], {}])
    if isinstance(c, dict):
        op = rng.choice(["set", "add", "pop", "reorder", "clear", "update", "setdefault"])
        if not c or op == "add":
            c[f"n{rng.random()}"] = new
        elif op == "set":
            c[rng.choice(list(c))] = new
        elif op == "pop":
            c.pop(rng.choice(list(c)))
        elif op == "reorder":
            k = rng.choice(list(c))
            c[k] = c.pop(k)
        elif op == "clear":
            c.clear()
        elif op == "update":
            c.update({rng.choice(list(c)): new})
        else:
            c.setdefault(f"s{rng.random()}", new)
    else:
        op = rng.choice(["set", "append", "reverse", "pop", "insert", "sort"])
        if not c or op == "append":
            c.append(new)
        elif op == "set":
            c[rng.randrange(len(c))] = new
        elif op == "reverse":
            c.reverse()
        elif op == "pop":
            c.pop()
        elif op == "insert":
            c.insert(0, new)
        else:
            try:
                c.sort()
            except TypeError:
                c.reverse()
    return True


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # orjson's range
    | st.floats(allow_nan=False, allow_infinity=False)  # orjson writes both as null
    | st.sampled_from([0, 0.0, -0.0, 1, 1.0, True, False])
    | st.text(max_size=8)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@settings(max_examples=300, deadline=None)
@given(value=values)
def test_an_unchanged_value_is_the_same(impl: Any, value: Any) -> None:
    _, take, same, _ = impl
    rec = take(value)
    assert rec is not None
    assert same(value, rec)  # the very same objects
    assert same(copy.deepcopy(value), rec)  # equal objects (a body parsed again)
    if not _has_tuple(value):  # parsed back, a tuple is a list: "changed" is allowed then
        assert same(orjson.loads(orjson.dumps(value)), rec)  # the same body parsed from JSON


def _has_tuple(v: Any) -> bool:
    if isinstance(v, tuple):
        return True
    if isinstance(v, dict):
        return any(_has_tuple(x) for x in v.values())
    return isinstance(v, list) and any(_has_tuple(x) for x in v)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@settings(max_examples=400, deadline=None)
@given(value=values, seed=st.integers(0, 2**32), steps=st.integers(1, 3))
def test_same_never_vouches_for_changed_bytes(impl: Any, value: Any, seed: int, steps: int) -> None:
    _, take, same, _ = impl
    rng = random.Random(seed)
    before = orjson.dumps(value)
    rec = take(value)
    for _ in range(steps):
        if not mutate(value, rng):
            return
    after = orjson.dumps(value)
    if same(value, rec):
        assert after == before
    if after != before:
        assert not same(value, rec)
        assert not same(copy.deepcopy(value), rec)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
@settings(max_examples=300, deadline=None)
@given(value=values, seed=st.integers(0, 2**32), steps=st.integers(0, 3))
def test_common_prefix_never_vouches_for_changed_canonical_bytes(
    impl: Any, value: Any, seed: int, steps: int
) -> None:
    # Its weaker contract: key order may be ignored, nothing else.
    _, take, _, common_prefix = impl
    rng = random.Random(seed)
    msgs = [{"role": "user", "content": "a"}, value, {"role": "user", "content": "b"}]
    canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    recs = [take(m) for m in msgs]
    for _ in range(steps):
        mutate(value, rng)
    k = common_prefix(msgs, recs)
    if orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != canonical:
        assert k == 1
    elif steps == 0:
        assert k == 3
    else:
        # Same canonical bytes after edits (keys reordered, a list swapped for an equal
        # tuple, a value set back): "unchanged" and "changed" both keep the contract.
        assert k in (1, 3)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_numbers_equal_in_python_but_not_in_json_are_a_change(impl: Any) -> None:
    _, take, same, _ = impl
    for a, b in [(1, 1.0), (1, True), (0, False), (0.0, -0.0), (1.0, True)]:
        v = {"x": [a]}
        rec = take(v)
        v["x"][0] = b
        assert not same(v, rec), (a, b)
        assert not same({"x": [b]}, rec), (a, b)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_rebuilt_containers_around_the_same_leaves(impl: Any) -> None:
    # What a framework sends per call: new dicts and lists holding the very same strings. The
    # native walk takes a recorded leaf met again as itself; a type object met where the record
    # has a container (the walk's own markers are the types dict, list and tuple) never is one.
    _, take, same, _ = impl
    v: dict[str, Any] = {"a": {"b": "x"}, "c": ["y", {"d": 1}, ("z",)], "e": [], "f": {}}
    rec = take(v)
    assert same(copy.deepcopy(v), rec)
    edits: list[Callable[[Any, Any], None]] = [
        lambda w, t: w.__setitem__("a", t),
        lambda w, t: w.__setitem__("e", t),
        lambda w, t: w.__setitem__("f", t),
        lambda w, t: w["c"].__setitem__(1, t),
        lambda w, t: w["c"].__setitem__(2, t),
        lambda w, t: w["c"].__setitem__(0, t),
    ]
    for edit in edits:
        for marker in (dict, list, tuple, str):
            w = copy.deepcopy(v)
            edit(w, marker)
            assert not same(w, rec), (marker, w)


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_values_it_cannot_vouch_for_have_no_record(impl: Any) -> None:
    _, take, _, _ = impl
    deep: list[Any] = []
    for _ in range(500):
        deep = [deep]
    assert take({"when": object()}) is None
    assert take(deep) is None  # deeper than any message: not walked
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert take(cyclic) is None


@pytest.mark.parametrize("impl", IMPLS, ids=IDS)
def test_common_prefix_counts_leading_matches(impl: Any) -> None:
    _, take, _, common_prefix = impl
    msgs = [{"role": "user", "content": f"m{i}", "n": i} for i in range(6)]
    recs = [take(m) for m in msgs]
    assert common_prefix(msgs, recs) == 6
    assert common_prefix(tuple(msgs), recs) == 6  # a caller's tuple of messages
    assert common_prefix(msgs[:4], recs) == 4
    assert common_prefix([*msgs, {"role": "user"}], recs) == 6
    msgs[3]["content"] = "edited"  # in place
    assert common_prefix(msgs, recs) == 3
    msgs[3]["content"] = "m3"  # back to what was recorded: the same bytes again
    assert common_prefix(msgs, recs) == 6
    msgs[0]["n"] = 0.0
    assert common_prefix(msgs, recs) == 0
