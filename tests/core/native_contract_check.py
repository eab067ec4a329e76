"""The native records' contract, checked with the standard library only.

Run by ``test_core_fingerprint.py`` under every other CPython the machine has, against
``promptcache._speedups`` compiled for that interpreter: the extension's fast paths differ
by version (dict version tags on 3.11, dict watchers from 3.12), and CI's own venv runs
one version only. Usage: ``python native_contract_check.py DIR_WITH_SPEEDUPS [SEED]``.
Exits non-zero with the failing case printed. ``test_core_fingerprint.py`` also uses its
``mutate`` for the hypothesis tests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import sys
from typing import Any

S: Any = None  # promptcache._speedups built for the interpreter running this (see main)

LEAVES: list[Any] = [0, 0.0, -0.0, 1, 1.0, True, False, None, "", "x", "é", 2**63, 1e16, -5]


def dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.35:
        return rng.choice(LEAVES)
    if r < 0.6:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if r < 0.7:
        return tuple(value(rng, depth + 1) for _ in range(rng.randrange(3)))
    return {rng.choice("abcdef"): value(rng, depth + 1) for _ in range(rng.randrange(4))}


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


def main() -> int:
    sys.path.insert(0, sys.argv[1])
    global S
    import _speedups as S  # compiled for this interpreter into argv[1]

    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    rng = random.Random(seed)
    for case in range(4000):
        v = {"tools": [value(rng) for _ in range(rng.randrange(1, 4))]}
        before = dumps(v)
        rec = S.take(v)
        if rec is None or not S.same(v, rec) or not S.same(copy.deepcopy(v), rec):
            print("unchanged value not same:", case, before)
            return 1
        for _ in range(rng.randrange(1, 4)):
            mutate(v, rng)
        after = dumps(v)
        if after != before and (S.same(v, rec) or S.same(copy.deepcopy(v), rec)):
            print("changed value passed as same:", case, before, "->", after)
            return 1
        # Renewed trust (3.12+): an unrelated watched dict changes, a walk finds ours
        # untouched and trusts the record again; a change of ours after that is still seen.
        w = {"tools": [value(rng) for _ in range(rng.randrange(1, 4))]}
        rec_w = S.take(w)
        other = {"z": 0}
        S.take(other)
        other["z"] = 1
        if not S.same(w, rec_w) or not S.same(w, rec_w):  # the walk, then the renewed fast path
            print("untouched value not same after an unrelated change:", case, dumps(w))
            return 1
        before_w = dumps(w)
        mutate(w, rng)
        if dumps(w) != before_w and S.same(w, rec_w):
            print("change after renewed trust passed as same:", case, before_w, "->", dumps(w))
            return 1
        msgs = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        recs = [S.take(m) for m in msgs]
        msgs[2]["content"] = "edited"
        if S.common_prefix(msgs, recs) != 2:
            print("common_prefix missed an in-place edit")
            return 1
    for a, b in [(1, 1.0), (1, True), (0, False), (0.0, -0.0)]:
        d = {"x": [a]}
        rec = S.take(d)
        d["x"][0] = b
        if S.same(d, rec):
            print("number types confused:", a, b)
            return 1
    # framed_sha256: the length-prefixed SHA-256 of canonical.digest, on both code paths
    # where the CPU has SHA extensions (the environment switch is read at import).
    for n in [*range(0, 140), 1000, 8000, 8200]:
        parts = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, n + 1))), bytes(n)]
        h = hashlib.sha256()
        for p in parts:
            h.update(len(p).to_bytes(8, "big") + p)
        got = S.framed_sha256(*parts)
        size = sum(8 + len(p) for p in parts)
        limit = 8192 if S.sha_extensions() else 256
        if (got is None) != (size > limit) or (got is not None and got != h.hexdigest()):
            print("framed_sha256 wrong:", n, got, h.hexdigest(), S.sha_extensions())
            return 1
        state = S.Sha256(parts[0])
        fork = state.copy()
        fork.update(parts[1])
        if (state.hexdigest(), fork.hexdigest()) != (
            hashlib.sha256(parts[0]).hexdigest(),
            hashlib.sha256(parts[0] + parts[1]).hexdigest(),
        ):
            print("Sha256 wrong:", n, S.sha_extensions())
            return 1
    print("ok", sys.version.split()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
