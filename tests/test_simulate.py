"""Tests for promptcache.lab.simulate: replays of real recordings, and hand-worked rule cases.

The replay tests feed each recorded request body, with the time from the recorded
``Date`` response header (pydantic-ai cassettes strip headers: their calls get
consecutive seconds), through a fresh Simulator and compare with the recorded usage:
hit/miss must match exactly, token counts within the tolerance stated per cassette.
"""

from __future__ import annotations

import email.utils
import json
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from promptcache.lab.bundled import REAL
from promptcache.lab.simulate import (
    MissReason,
    Simulator,
    TooManyBreakpoints,
    min_cacheable_tokens,
    render,
    simulate,
)
from promptcache.tokens import counter_for_model

# ----------------------------------------------------------------------------------------
# Recording helpers
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A recorded usage, normalized: ``total`` counts every prompt token."""

    total: int
    read: int
    write: int
    by_ttl: dict[str, int]


def recorded_usage(u: dict[str, Any]) -> Recorded:
    if "cache_creation_input_tokens" in u:  # Anthropic (also Bedrock InvokeModel)
        cc = u.get("cache_creation") or {}
        by_ttl = {
            "5m": cc.get("ephemeral_5m_input_tokens", 0),
            "1h": cc.get("ephemeral_1h_input_tokens", 0),
        }
        read, write = u["cache_read_input_tokens"], u["cache_creation_input_tokens"]
        return Recorded(u["input_tokens"] + read + write, read, write, by_ttl)
    if "cacheReadInputTokens" in u:  # Bedrock Converse
        read, write = u["cacheReadInputTokens"], u["cacheWriteInputTokens"]
        return Recorded(u["inputTokens"] + read + write, read, write, {"5m": write})
    if "prompt_tokens" in u:  # OpenAI chat
        d = u.get("prompt_tokens_details") or {}
        write = d.get("cache_write_tokens", 0)
        return Recorded(u["prompt_tokens"], d.get("cached_tokens", 0), write, {"30m": write})
    if "input_tokens_details" in u:  # OpenAI responses
        d = u["input_tokens_details"]
        write = d.get("cache_write_tokens", 0)
        return Recorded(u["input_tokens"], d.get("cached_tokens", 0), write, {"30m": write})
    return Recorded(u["promptTokenCount"], u.get("cachedContentTokenCount", 0), 0, {})


def interactions(name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads((REAL / "decoded" / f"{name}.json").read_text())
    return out


def dates(name: str) -> list[float | None]:
    raw = yaml.safe_load((REAL / "cassettes" / f"{name}.yaml").read_text())
    out: list[float | None] = []
    for it in raw["interactions"]:
        headers = it["response"].get("headers") or {}
        d = headers.get("Date") or headers.get("date")
        out.append(email.utils.parsedate_to_datetime(d[0]).timestamp() if d else None)
    return out


FORMATS = {
    "anthropic": "anthropic-messages",
    "bedrock_invoke": "anthropic-messages",
    "bedrock_converse": "bedrock-converse",
    "openai_chat": "openai-chat",
    "openai_responses": "openai-responses",
    "gemini": "gemini",
}


def fmt_of(name: str) -> str:
    return next(v for k, v in FORMATS.items() if name.startswith(k))


def model_of(name: str, it: dict[str, Any]) -> str | None:
    if "/model/" in it["uri"]:  # Bedrock: the model is in the URL
        return str(it["uri"].split("/model/")[1].split("/")[0].replace("%3A", ":"))
    if "/models/" in it["uri"]:
        return str(it["uri"].split("/models/")[1].split(":")[0])
    return None


def replay(sim: Simulator, name: str, *, start: float = 1_000_000.0) -> list[tuple[Any, Recorded]]:
    """Feed one cassette through ``sim``; return (prediction, recording) per model call."""
    out = []
    for i, (it, ts) in enumerate(zip(interactions(name), dates(name), strict=True)):
        t = ts if ts is not None else start + i
        body = it["request_body"]
        resp = it["response_body"] if isinstance(it["response_body"], dict) else {}
        if it["method"] == "DELETE":
            sim.delete_cached_content(it["uri"].split("/v1beta/")[1])
            continue
        if it["uri"].endswith("/cachedContents"):
            sim.create_cached_content(t, body, name=resp["name"])
            continue
        # OpenAI's system_fingerprint names the backend configuration that served the
        # call; prompt caches live on those machines, so it is the cache route.
        route = resp.get("system_fingerprint") if name.startswith("openai") else None
        org = None
        pred = sim.feed(t, fmt_of(name), body, route=route, org=org, model=model_of(name, it))
        out.append((pred, recorded_usage(it["usage_found_in_response"][0])))
    return out


def check(pairs: list[tuple[Any, Recorded]], *, tol: float, read_slack: int = 0) -> None:
    for pred, rec in pairs:
        assert pred.hit == (rec.read > 0)
        u = pred.usage
        for p, r in ((u.input_tokens, rec.total), (u.cache_read_tokens, rec.read)):
            assert abs(p - r) <= max(tol * r, read_slack), (p, r)
        assert abs(u.cache_write_tokens - rec.write) <= tol * rec.write + read_slack


# ----------------------------------------------------------------------------------------
# Replays: OpenAI (exact tokenizer)
# ----------------------------------------------------------------------------------------


def test_openai_chat_openllmetry_four_identical_calls() -> None:
    """0, 1024, then 0, 0: call 3 is a year later from another org, call 4 a new backend."""
    name = "openai_chat__openllmetry__prompt_caching"
    pairs = replay(Simulator(), name)
    reads = [p.usage.cache_read_tokens for p, _ in pairs]
    assert reads == [0, 1024, 0, 0] == [r.read for _, r in pairs]
    assert [p.usage.input_tokens for p, _ in pairs] == [1149] * 4
    assert pairs[0][0].miss_reason is MissReason.FIRST_SIGHT
    # Call 3: the 2025 entry is long gone (and the fingerprint changed too).
    assert pairs[2][0].miss_reason is MissReason.FIRST_SIGHT
    # Call 4, 7 s after call 3 with the same body, was served by a different
    # system_fingerprint (fp_b3145288b8 vs fp_f3f8cb237c): a cold backend.
    assert pairs[3][0].miss_reason is MissReason.FIRST_SIGHT


def test_openai_chat_call4_without_route_hint_is_predicted_hit() -> None:
    """Documented rules alone predict a hit for call 4: the route hint is what explains it."""
    sim = Simulator()
    its, ds = (
        interactions("openai_chat__openllmetry__prompt_caching"),
        dates("openai_chat__openllmetry__prompt_caching"),
    )
    results = [sim.feed(t or 0.0, "openai-chat", it["request_body"]) for it, t in zip(its, ds, strict=False)]
    assert [r.usage.cache_read_tokens for r in results] == [0, 1024, 0, 1024]
    assert results[2].miss_reason is MissReason.EXPIRED


def test_openai_chat_stream_ddtrace_read_after_upstream_write() -> None:
    """The read cassette's cache was warmed by its upstream companion
    (dd-trace-py tests/contrib/openai/cassettes/v1/chat_completion_stream_prompt_caching_
    cache_write.yaml, created 1751568161 = 4 s before): same system message, user asked
    "What are the best practices for API design?". We seed with that request."""
    name = "openai_chat_stream__ddtrace__cache_read"
    body = interactions(name)[0]["request_body"]
    seed = json.loads(json.dumps(body))
    seed["messages"][1]["content"] = "What are the best practices for API design?"
    sim = Simulator()
    t = dates(name)[0]
    assert t is not None
    first = sim.feed(t - 4, "openai-chat", seed)
    assert not first.hit and first.usage.input_tokens == 1421
    pairs = replay(sim, name)
    # common prefix = system message (1405) + user header (3) = 1408 -> 11 blocks; OpenAI
    # reported 10 blocks (1280): one 128-token block less than the documented rule.
    assert pairs[0][0].usage.cache_read_tokens == 1408
    check(pairs, tol=0.0, read_slack=128)


def test_openai_responses_ddtrace_write_then_read() -> None:
    sim = Simulator()
    write = replay(sim, "openai_responses__ddtrace__cache_write")
    read = replay(sim, "openai_responses__ddtrace__cache_read")
    assert write[0][0].miss_reason is MissReason.FIRST_SIGHT
    # inputs differ only in the last 4 tokens ("count from 1 to 3" vs "2 to 4"):
    # common prefix 1508 -> 1408 predicted; OpenAI reported 1390 (18 fewer).
    assert read[0][0].usage.cache_read_tokens == 1408
    check(write + read, tol=0.0, read_slack=18)


@pytest.mark.parametrize(
    "name",
    [
        "openai_chat__pydantic_ai__prompt_cache_key_e2e",
        "openai_responses__pydantic_ai__prompt_cache_key_e2e",
    ],
)
def test_openai_gpt56_explicit_breakpoint_exact(name: str) -> None:
    pairs = replay(Simulator(), name)
    (p1, _r1), (p2, _r2) = pairs
    assert (p1.usage.input_tokens, p1.usage.cache_write_tokens, p1.hit) == (4020, 4012, False)
    assert p1.usage.cache_write_tokens_by_ttl == {"30m": 4012}
    assert (p2.usage.cache_read_tokens, p2.usage.cache_write_tokens, p2.hit) == (4012, 0, True)
    check(pairs, tol=0.0)


# ----------------------------------------------------------------------------------------
# Replays: Anthropic / Bedrock (estimated tokenizer)
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tol"),
    [
        ("anthropic__openllmetry__prompt_caching_legacy", 0.07),
        ("anthropic__openllmetry__prompt_caching_stream_legacy", 0.07),
        ("anthropic__pydantic_ai__cache_messages_real_api", 0.09),
        ("bedrock_converse_stream__ddtrace__prompt_caching", 0.09),
    ],
)
def test_anthropic_write_then_read(name: str, tol: float) -> None:
    pairs = replay(Simulator(), name)
    assert [p.hit for p, _ in pairs] == [False, True]
    assert pairs[0][0].miss_reason is MissReason.FIRST_SIGHT
    check(pairs, tol=tol, read_slack=3)


def test_anthropic_pydantic_multiturn_moves_breakpoint() -> None:
    """Turn 2 reads turn 1's prefix (found by the lookback from the moved breakpoint)
    and writes only the new span: recorded read 1111 + write 403."""
    (_, _), (p2, r2) = replay(Simulator(), "anthropic__pydantic_ai__cache_messages_real_api")
    r1 = render(
        "anthropic-messages",
        interactions("anthropic__pydantic_ai__cache_messages_real_api")[0]["request_body"],
    )
    assert p2.usage.cache_read_tokens == r1.cumulative[r1.breakpoints[-1][0]]
    assert abs(p2.usage.cache_write_tokens - r2.write) <= 0.09 * r2.write


def test_anthropic_toplevel_cache_control_seeded() -> None:
    """Call 1 was already a read (warm from an earlier run of the upstream test): we seed
    the cache with the same body 60 s earlier instead of loosening the assertion."""
    name = "anthropic__pydantic_ai__cache_real_api_toplevel_cache_control"
    sim = Simulator()
    seed = sim.feed(1_000_000.0 - 60, "anthropic-messages", interactions(name)[0]["request_body"])
    assert not seed.hit and seed.usage.cache_write_tokens > 0
    pairs = replay(sim, name)
    assert [p.hit for p, _ in pairs] == [True, True]
    assert pairs[0][0].usage.cache_write_tokens == 0
    check(pairs, tol=0.09, read_slack=3)


def test_anthropic_ddtrace_mixed_ttl_split() -> None:
    """system[0] closes a 1h span, messages[0].content[0] a 5m span: the split matches
    the recording for the 5m part; the 1h part is 43 % low (repeated " farewell" is two
    Claude-4 tokens and one o200k token)."""
    [(pred, rec)] = replay(Simulator(), "anthropic__ddtrace_litellm__cache_write_1h_ttl")
    assert not pred.hit and rec.read == 0
    by_ttl = pred.usage.cache_write_tokens_by_ttl
    assert set(by_ttl) == {"1h", "5m"}
    assert abs(by_ttl["5m"] - rec.by_ttl["5m"]) <= 2
    assert 0.5 * rec.by_ttl["1h"] <= by_ttl["1h"] <= rec.by_ttl["1h"]


@pytest.mark.xfail(
    strict=True,
    reason="all-caps system text + 2 tools: our Claude estimate (~990) falls under the "
    "1,024 minimum, the real prompt had 1,324 tokens",
)
def test_bedrock_converse_pydantic_hit_miss() -> None:
    pairs = replay(Simulator(), "bedrock_converse__pydantic_ai__cache_write_and_read")
    assert [p.hit for p, _ in pairs] == [False, True]
    assert pairs[0][0].usage.cache_write_tokens > 0


def test_bedrock_converse_pydantic_what_we_predict() -> None:
    pairs = replay(Simulator(), "bedrock_converse__pydantic_ai__cache_write_and_read")
    for pred, rec in pairs:
        assert pred.miss_reason is MissReason.BELOW_MINIMUM
        assert 0.7 * rec.total <= pred.usage.input_tokens < 1024
    assert pairs[0][0].breakpoints == 4


def test_bedrock_invoke_body_was_edited_upstream() -> None:
    """The recorded body's system prompt is the placeholder "very very long system
    prompt" (46 characters of text in all), yet usage says 18,131 cached tokens: the
    body was shortened after recording, so it cannot be replayed. We assert what the
    simulator says about the body as recorded."""
    pairs = replay(Simulator(), "bedrock_invoke_anthropic__openllmetry__prompt_cache")
    for pred, rec in pairs:
        assert rec.total > 18_000
        assert pred.usage.input_tokens < 40
        assert pred.miss_reason is MissReason.BELOW_MINIMUM
    assert min_cacheable_tokens("anthropic.claude-3-5-haiku-20241022-v1:0") == 2048


# ----------------------------------------------------------------------------------------
# Replays: Gemini
# ----------------------------------------------------------------------------------------


def test_gemini_explicit_cached_content() -> None:
    pairs = replay(Simulator(), "gemini__pydantic_ai__cached_content")
    assert len(pairs) == 2
    for pred, rec in pairs:
        assert (pred.usage.input_tokens, pred.usage.cache_read_tokens) == (3520, 3512)
        assert (rec.total, rec.read) == (3520, 3512)


def test_gemini_cached_content_expires_and_deletes() -> None:
    name = "gemini__pydantic_ai__cached_content"
    its = interactions(name)
    sim = Simulator(model="gemini-2.5-flash")
    cname = sim.create_cached_content(0.0, its[0]["request_body"], name="cachedContents/x")
    body = dict(its[1]["request_body"], cachedContent=cname)
    assert sim.feed(120.0, "gemini", body).hit  # ttl 120s: still alive at 120 s
    late = sim.feed(121.0, "gemini", body)
    assert not late.hit and late.miss_reason is MissReason.EXPIRED
    sim.delete_cached_content(cname)
    gone = sim.feed(1.0, "gemini", body)
    assert gone.miss_reason is MissReason.UNKNOWN_CACHED_CONTENT


# ----------------------------------------------------------------------------------------
# Hand-worked rule cases
# ----------------------------------------------------------------------------------------


def words(n: int) -> str:
    """Text of exactly ``n`` o200k tokens."""
    text = "a" + " a" * (n - 1)
    assert counter_for_model("gpt-4o").count(text) == n
    return text


def chat(n_prompt: int, **extra: Any) -> dict[str, Any]:
    """An openai-chat body whose prompt is exactly ``n_prompt`` tokens (3+n+1, +3 prime)."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": words(n_prompt - 7)}]}
    return body | extra


def test_openai_minimum_1023_vs_1024() -> None:
    sim = Simulator()
    for t in (0.0, 1.0):
        short = sim.feed(t, "openai-chat", chat(1023))
    assert short.usage.input_tokens == 1023
    assert short.miss_reason is MissReason.BELOW_MINIMUM
    sim.feed(2.0, "openai-chat", chat(1024))
    again = sim.feed(3.0, "openai-chat", chat(1024))
    assert again.usage.cache_read_tokens == 1024


def test_openai_128_token_increments() -> None:
    sim = Simulator()
    body = chat(1300)
    sim.feed(0.0, "openai-chat", body)
    r = sim.feed(1.0, "openai-chat", body)
    assert r.usage.cache_read_tokens == 1280  # 10 x 128, not 1300
    sim2 = Simulator()
    sim2.feed(0.0, "openai-chat", chat(1153))
    assert sim2.feed(1.0, "openai-chat", chat(1153)).usage.cache_read_tokens == 1152


def test_openai_divergence_reports_segment() -> None:
    sim = Simulator()
    a = {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": words(1200)}],
    }
    b = json.loads(json.dumps(a))
    b["messages"][0]["content"] = "y"
    sim.feed(0.0, "openai-chat", a)
    r = sim.feed(1.0, "openai-chat", b)
    assert r.miss_reason is MissReason.PREFIX_DIVERGED
    assert r.diverged_path == "messages[0].content"


def test_openai_idle_expiry_and_24h_retention() -> None:
    sim = Simulator()
    body = chat(1500)
    sim.feed(0.0, "openai-chat", body)
    assert sim.feed(300.0, "openai-chat", body).hit
    assert sim.feed(600.0, "openai-chat", body).hit  # refreshed at 300
    assert sim.feed(901.0, "openai-chat", body).miss_reason is MissReason.EXPIRED
    long = chat(1500, prompt_cache_retention="24h")
    sim.feed(10_000.0, "openai-chat", long)
    assert sim.feed(10_000.0 + 20 * 3600, "openai-chat", long).hit


def test_openai_in_memory_max_lifetime_one_hour() -> None:
    sim = Simulator()
    body = chat(1500)
    for t in range(0, 3600, 200):
        sim.feed(float(t), "openai-chat", body)
    r = sim.feed(3700.0, "openai-chat", body)
    assert r.hit  # a newer entry (written at 3400) serves it
    sim2 = Simulator(openai_idle_ttl_s=10_000.0)
    sim2.feed(0.0, "openai-chat", body)
    assert not sim2.feed(3601.0, "openai-chat", body).hit


def test_openai_prompt_cache_key_and_org_are_cache_identity() -> None:
    sim = Simulator()
    sim.feed(0.0, "openai-chat", chat(1500, prompt_cache_key="a"))
    assert not sim.feed(1.0, "openai-chat", chat(1500, prompt_cache_key="b")).hit
    assert sim.feed(2.0, "openai-chat", chat(1500, prompt_cache_key="a")).hit
    assert not sim.feed(3.0, "openai-chat", chat(1500, prompt_cache_key="a"), org="other").hit


def test_openai_gpt56_explicit_mode_without_breakpoint_caches_nothing() -> None:
    body = {
        "model": "gpt-5.6",
        "prompt_cache_options": {"mode": "explicit"},
        "messages": [{"role": "user", "content": words(2000)}],
    }
    sim = Simulator()
    sim.feed(0.0, "openai-chat", body)
    r = sim.feed(1.0, "openai-chat", body)
    assert r.miss_reason is MissReason.NO_BREAKPOINT and r.usage.cache_write_tokens == 0
    implicit = dict(body, prompt_cache_options={"mode": "implicit"})
    first = sim.feed(2.0, "openai-chat", implicit)
    assert first.usage.cache_write_tokens == first.usage.input_tokens - 2  # up to reply prime


def claude(blocks: list[dict[str, Any]], system: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": blocks}],
    }
    if system:
        body["system"] = system
    return body


BIG = {"type": "text", "text": words(1500)}
EPH = {"type": "ephemeral"}


def small(i: int, marked: bool = False) -> dict[str, Any]:
    blk: dict[str, Any] = {"type": "text", "text": f"note {i}"}
    if marked:
        blk["cache_control"] = EPH
    return blk


@pytest.mark.parametrize(("n_blocks", "hit"), [(20, True), (21, False)])
def test_anthropic_lookback_20_blocks(n_blocks: int, hit: bool) -> None:
    sim = Simulator()
    first = sim.feed(0.0, "anthropic-messages", claude([], system=[dict(BIG, cache_control=EPH)]))
    assert first.usage.cache_write_tokens > 1024
    blocks = [small(i, marked=i == n_blocks) for i in range(1, n_blocks + 1)]
    r = sim.feed(1.0, "anthropic-messages", claude(blocks, system=[BIG]))
    assert r.hit is hit
    if hit:
        assert r.usage.cache_read_tokens == first.usage.cache_write_tokens
    else:
        assert r.miss_reason is MissReason.LOOKBACK_EXCEEDED


def test_anthropic_ttl_expiry_5m_plus_1s() -> None:
    body = claude([dict(BIG, cache_control=EPH)])
    sim = Simulator()
    sim.feed(0.0, "anthropic-messages", body)
    r = sim.feed(301.0, "anthropic-messages", body)
    assert not r.hit and r.miss_reason is MissReason.EXPIRED
    assert r.usage.cache_write_tokens > 0  # written again
    assert sim.feed(600.0, "anthropic-messages", body).hit


def test_anthropic_ttl_refreshed_on_hit() -> None:
    body = claude([dict(BIG, cache_control=EPH)])
    sim = Simulator()
    sim.feed(0.0, "anthropic-messages", body)
    assert sim.feed(200.0, "anthropic-messages", body).hit
    assert sim.feed(450.0, "anthropic-messages", body).hit  # alive until 500 after refresh
    one_hour = claude([dict(BIG, cache_control={"type": "ephemeral", "ttl": "1h"})])
    sim2 = Simulator()
    w = sim2.feed(0.0, "anthropic-messages", one_hour)
    assert set(w.usage.cache_write_tokens_by_ttl) == {"1h"}
    assert sim2.feed(3500.0, "anthropic-messages", one_hour).hit


def test_anthropic_four_breakpoint_limit() -> None:
    four = claude([small(1, True), small(2, True), small(3, True)], system=[dict(BIG, cache_control=EPH)])
    Simulator().feed(0.0, "anthropic-messages", four)
    five = claude([small(i, True) for i in range(1, 5)], system=[dict(BIG, cache_control=EPH)])
    with pytest.raises(TooManyBreakpoints):
        Simulator().feed(0.0, "anthropic-messages", five)
    auto = dict(four, cache_control=EPH)  # top-level adds a 5th, on the last block
    assert len(render("anthropic-messages", auto).breakpoints) == 4  # same block: merged


def test_anthropic_minimum_per_model() -> None:
    text = {"type": "text", "text": words(1500), "cache_control": EPH}
    sonnet = Simulator().feed(0.0, "anthropic-messages", claude([text]))
    assert sonnet.usage.cache_write_tokens > 0
    haiku_body = dict(claude([text]), model="claude-3-5-haiku-20241022")
    haiku = Simulator().feed(0.0, "anthropic-messages", haiku_body)
    assert haiku.miss_reason is MissReason.BELOW_MINIMUM and haiku.usage.cache_write_tokens == 0


def test_anthropic_orgs_never_share() -> None:
    body = claude([dict(BIG, cache_control=EPH)])
    sim = Simulator()
    sim.feed(0.0, "anthropic-messages", body, org="a")
    assert not sim.feed(1.0, "anthropic-messages", body, org="b").hit
    assert sim.feed(2.0, "anthropic-messages", body, org="a").hit


def test_no_breakpoint_no_cache_for_anthropic() -> None:
    sim = Simulator()
    sim.feed(0.0, "anthropic-messages", claude([BIG]))
    r = sim.feed(1.0, "anthropic-messages", claude([BIG]))
    assert r.miss_reason is MissReason.NO_BREAKPOINT


def test_rendering_excludes_sampling_params_and_markers() -> None:
    a = render("anthropic-messages", claude([dict(BIG, cache_control=EPH)]))
    b = render("anthropic-messages", dict(claude([BIG]), temperature=0.2, top_k=3))
    assert a.hashes == b.hashes and a.total_tokens == b.total_tokens
    tools = dict(claude([BIG]), tools=[{"name": "f", "input_schema": {"type": "object"}}])
    assert render("anthropic-messages", tools).total_tokens > a.total_tokens + 300


def test_simulate_convenience_and_provider_check() -> None:
    results = simulate([(0.0, "openai-chat", chat(1200)), (1.0, "openai-chat", chat(1200))])
    assert [r.hit for r in results] == [False, True]
    with pytest.raises(ValueError, match="not a openai format"):
        Simulator(provider="openai").feed(0.0, "gemini", {"contents": []})


# ----------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------

PIECES = [words(n) for n in (5, 300, 700, 1100)]


@st.composite
def anthropic_trace(draw: st.DrawFn) -> list[tuple[float, dict[str, Any]]]:
    out, t = [], 0.0
    for _ in range(draw(st.integers(1, 6))):
        t += draw(st.sampled_from([1.0, 60.0, 299.0, 301.0, 4000.0]))
        idx = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4))
        marks = draw(st.lists(st.booleans(), min_size=len(idx), max_size=len(idx)))
        blocks = [
            {"type": "text", "text": PIECES[i]} | ({"cache_control": EPH} if m else {})
            for i, m in zip(idx, marks, strict=True)
        ]
        out.append((t, claude(blocks)))
    return out


@settings(max_examples=60, deadline=None)
@given(anthropic_trace())
def test_property_cached_never_exceeds_input(trace: list[tuple[float, dict[str, Any]]]) -> None:
    sim = Simulator()
    for t, body in trace:
        u = sim.feed(t, "anthropic-messages", body).usage
        assert u.cache_read_tokens + u.cache_write_tokens <= u.input_tokens


@settings(max_examples=60, deadline=None)
@given(anthropic_trace(), st.floats(0.0, 299.0))
def test_property_repeat_within_ttl_reads_what_was_written(
    trace: list[tuple[float, dict[str, Any]]], dt: float
) -> None:
    sim = Simulator()
    for t, body in trace:
        first = sim.feed(t, "anthropic-messages", body)
        again = sim.feed(t + dt, "anthropic-messages", body)
        assert again.usage.cache_read_tokens >= first.usage.cache_write_tokens
        assert again.usage.cache_read_tokens >= first.usage.cache_read_tokens


@settings(max_examples=40, deadline=None)
@given(st.integers(1030, 3000), st.floats(0.0, 299.0))
def test_property_openai_repeat_reads_whole_blocks(n: int, dt: float) -> None:
    sim = Simulator()
    sim.feed(0.0, "openai-chat", chat(n))
    r = sim.feed(dt, "openai-chat", chat(n))
    assert r.usage.cache_read_tokens == (n // 128) * 128
    assert r.usage.cache_read_tokens <= r.usage.input_tokens
