"""Records of JSON-like values (``promptcache.fingerprint``): ``same`` is true only when the
value still serializes to the bytes (key order included) it had when the record was taken.

Both implementations are held to it: the native module (when built) and the pure-Python
fallback. Values are mutated in place the ways a caller can: a nested value replaced, a
key added or removed, a list appended to or reordered, a number changed to an equal
number of another type (``1 == 1.0 == True``, ``0.0 == -0.0``).
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_contract_check import mutate

from promptcache import fingerprint

IMPLS: list[tuple[str, Callable[[Any], Any], Callable[[Any, Any], bool], Callable[[Any, Any], int]]] = [
    ("python", fingerprint.py_take, fingerprint.py_same, fingerprint.py_common_prefix)
]
try:
    from promptcache import _speedups

    IMPLS.append(("native", _speedups.take, _speedups.same, _speedups.common_prefix))
except ImportError:
    pass
IDS = [i[0] for i in IMPLS]

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


@pytest.mark.skipif(not fingerprint.NATIVE, reason="native module not built")
def test_native_records_do_not_keep_a_stale_answer_after_a_mutation() -> None:
    # The native fast path trusts untouched containers; each kind of in-place change to a
    # recorded object must send it back to comparing values.
    tools = [{"name": "t", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]
    rec = fingerprint.take(tools)
    assert fingerprint.same(tools, rec)
    assert fingerprint.same(list(tools), rec)  # a new list around the same dicts
    props = tools[0]["parameters"]["properties"]
    props["a"]["type"] = "integer"
    assert not fingerprint.same(tools, rec)
    props["a"]["type"] = "string"
    assert fingerprint.same(tools, rec)  # mutated and restored: equal bytes again
    props["a"] = {"type": "string"}  # an equal, new object
    assert fingerprint.same(tools, rec)
    tools.append({"name": "u"})
    assert not fingerprint.same(tools, rec)
    tools.pop()
    assert fingerprint.same(tools, rec)


def test_the_native_module_is_built_where_a_compiler_is() -> None:
    # The extension is optional so that installs without a compiler work; where one is
    # present a missing module means the build broke, which must not pass unnoticed.
    cc = sysconfig.get_config_var("CC") or "cc"
    if shutil.which(str(cc).split()[0]) is None:
        pytest.skip(f"no C compiler ({cc}): the pure-Python fallback is in use")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.exists():
        pytest.skip(f"no Python headers ({headers}): the pure-Python fallback is in use")
    assert fingerprint.NATIVE, (
        "promptcache._speedups was not built although a compiler and Python.h are here: "
        "`.venv/bin/uv pip install --python .venv/bin/python -e . -v` rebuilds it "
        "and shows the compiler's output"
    )


_ABOUT = "import sys, sysconfig as s; print(sys.implementation.name, '%d.%d' % sys.version_info[:2]); "
_ABOUT += "print(s.get_paths()['include'], s.get_config_var('EXT_SUFFIX'))"


def _other_pythons() -> list[tuple[str, str, str]]:
    """(interpreter, include dir, extension suffix) of other CPython 3.11+ on this machine."""
    found: dict[str, tuple[str, str, str]] = {}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(11, 16)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p) for p in sorted(pyenv.glob("3.*/bin/python3"))]
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", _ABOUT], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        words = out.stdout.split()
        if out.returncode != 0 or len(words) != 4 or words[0] != "cpython":
            continue
        major, minor = (int(x) for x in words[1].split("."))
        if (major, minor) >= (3, 11) and words[1] != here:
            found.setdefault(words[1], (exe, words[2], words[3]))
    return [found[v] for v in sorted(found)]


OTHER_PYTHONS = _other_pythons()


@pytest.mark.skipif(not OTHER_PYTHONS, reason="no other CPython 3.11+ on this machine")
@pytest.mark.parametrize("python", OTHER_PYTHONS, ids=lambda p: Path(p[0]).parent.parent.name)
def test_the_native_contract_holds_on_other_interpreters(
    python: tuple[str, str, str], tmp_path: Path
) -> None:
    # The extension's fast path differs by CPython version; CI's venv runs one. Compile it
    # for each other interpreter found and run the stdlib-only contract check there.
    exe, include, suffix = python
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    source = Path(fingerprint.__file__).with_name("_speedups.c")
    out = tmp_path / f"_speedups{suffix}"
    flags = ["-O2", "-fPIC", "-shared", "-Wall", "-Werror", f"-I{include}"]
    build = subprocess.run([cc, *flags, str(source), "-o", str(out)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    check = Path(__file__).with_name("native_contract_check.py")
    for sha_ni in ("1", "0"):  # the CPU's SHA extensions (where it has them), then the portable code
        env = {**os.environ, "PROMPTCACHE_NO_SHA_NI": "0" if sha_ni == "1" else "1"}
        run = subprocess.run(
            [exe, str(check), str(tmp_path), "7"], capture_output=True, text=True, timeout=300, env=env
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith("ok")
