"""Read back what a provider actually did: its usage report, normalized to ``CacheUsage``.

Every provider counts prompt-cache tokens its own way:

* **Anthropic Messages** (also Claude on Bedrock through ``InvokeModel``):
  ``usage.input_tokens`` *excludes* ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens``; ``usage.cache_creation`` splits writes by TTL
  (``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``).
* **OpenAI Chat Completions**: ``usage.prompt_tokens`` *includes*
  ``prompt_tokens_details.cached_tokens`` (and the newer ``cache_write_tokens``);
  reasoning tokens are part of ``completion_tokens``.
* **OpenAI Responses**: the same, under ``input_tokens_details`` /
  ``output_tokens_details``.
* **Bedrock Converse**: ``usage.inputTokens`` *excludes* ``cacheReadInputTokens``
  and ``cacheWriteInputTokens``.
* **Gemini**: ``usageMetadata.promptTokenCount`` *includes*
  ``cachedContentTokenCount``; ``thoughtsTokenCount`` is billed as output but not
  counted in ``candidatesTokenCount``.

The result always has ``input_tokens`` = every prompt token, cached or not.

>>> body = {"model": "claude-sonnet-4-5", "usage": {"input_tokens": 3,
...         "cache_read_input_tokens": 1111, "cache_creation_input_tokens": 403,
...         "cache_creation": {"ephemeral_5m_input_tokens": 403}, "output_tokens": 33}}
>>> u = usage_from_response("anthropic-messages", body)
>>> (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_tokens_by_ttl)
(1517, 1111, 403, {'5m': 403})

A malformed body raises ``ValueError`` naming the field. A field that is absent
or ``null`` counts as zero where the provider documents it as optional; a field
that is present with the wrong type is an error, never a silent zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from promptcache.formats import WireFormat, parse_format
from promptcache.usage import CacheUsage

__all__ = ["format_of_usage", "usage_from_answer", "usage_from_response", "usage_from_stream"]

_TTL_FIELD = re.compile(r"^ephemeral_(?P<ttl>[0-9]+[smhd])_input_tokens$")


def usage_from_response(
    format: str | WireFormat,
    body: Mapping[str, Any],
    *,
    model: str | None = None,
    provider: str | None = None,
) -> CacheUsage:
    """Normalize the usage in one non-streaming response body.

    ``body`` is the provider's parsed JSON response (for SDK objects:
    ``.to_dict()`` for anthropic/openai, ``model_dump(mode="json", by_alias=True)``
    for google-genai; boto3 already returns plain dicts). ``model`` overrides the
    model id found in the body (Bedrock Converse bodies carry none; pass the
    ``modelId``). ``provider`` overrides the provider family of ``format``.

    For ``bedrock-converse``, a body with Anthropic field names (``InvokeModel``
    with a native Claude body) is read as ``anthropic-messages`` with provider
    ``bedrock``. For ``gemini``, a ``cachedContents`` resource (the answer to
    creating an explicit cache) is read as a cache write of its token count.

    >>> usage_from_response("openai-chat", {"model": "gpt-4o", "usage": {
    ...     "prompt_tokens": 1420, "completion_tokens": 100,
    ...     "prompt_tokens_details": {"cached_tokens": 1280}}}).cache_read_tokens
    1280
    """
    fmt = parse_format(format)
    if type(body) is not dict:  # isinstance against the Mapping ABC is a Python-level call
        _require_mapping(body, "body")
    prov = provider or fmt.provider
    usage = body.get("usage")
    if type(usage) is dict and fmt in _FAST_FORMATS and body.get("type") != "error":
        # Every answer's usage is read on the call path: the usual shapes skip the parser.
        fast = _fast_usage(fmt, usage, _model(model, body, "model"), prov)
        if fast is not None:
            return fast
    return _parse(fmt, body, model=model, provider=prov)


def format_of_usage(body: Mapping[str, Any]) -> WireFormat | None:
    """The wire format whose usage report ``body`` (a response of unknown provider) carries.

    Told by the report's own field names, which no two formats share: ``prompt_tokens``
    (Chat Completions), ``inputTokens`` (Converse), ``input_tokens_details`` or
    ``"object": "response"`` (Responses), ``input_tokens`` (Anthropic), ``usageMetadata``
    (Gemini). None when ``body`` carries no usage report.

    >>> format_of_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    <WireFormat.OPENAI_CHAT: 'openai-chat'>
    """
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        if "prompt_tokens" in usage:
            return WireFormat.OPENAI_CHAT
        if "inputTokens" in usage:
            return WireFormat.BEDROCK_CONVERSE
        if "input_tokens_details" in usage or body.get("object") == "response":
            return WireFormat.OPENAI_RESPONSES
        if "input_tokens" in usage:
            return WireFormat.ANTHROPIC_MESSAGES
    if isinstance(body.get("usageMetadata") or body.get("usage_metadata"), Mapping):
        return WireFormat.GEMINI
    return None


def usage_from_answer(body: Mapping[str, Any], *, model: str | None = None) -> CacheUsage | None:
    """The usage of an answer whose wire format is not known (:func:`format_of_usage`), or None
    when it carries no readable report. ``model`` names the model where the body does not
    (Bedrock Converse)."""
    fmt = format_of_usage(body)
    if fmt is None:
        return None
    try:
        return usage_from_response(fmt, body, model=model if fmt is WireFormat.BEDROCK_CONVERSE else None)
    except (ValueError, TypeError):
        return None


def _parse(fmt: WireFormat, body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    """The general parser of :func:`usage_from_response`: every shape, every error named."""
    prov = provider
    if fmt is WireFormat.ANTHROPIC_MESSAGES:
        return _anthropic(body, model=model, provider=prov)
    if fmt is WireFormat.OPENAI_CHAT:
        return _openai_chat(body, model=model, provider=prov)
    if fmt is WireFormat.OPENAI_RESPONSES:
        return _openai_responses(body, model=model, provider=prov)
    if fmt is WireFormat.BEDROCK_CONVERSE:
        usage = body.get("usage")
        if isinstance(usage, Mapping) and "inputTokens" not in usage and "input_tokens" in usage:
            # InvokeModel passes Claude's native Messages body through unchanged.
            return _anthropic(body, model=model, provider=prov)
        return _bedrock_converse(body, model=model, provider=prov)
    return _gemini(body, model=model, provider=prov)


def usage_from_stream(
    format: str | WireFormat,
    events: Iterable[Mapping[str, Any]],
    *,
    model: str | None = None,
    provider: str | None = None,
) -> CacheUsage:
    """Normalize the usage of one streamed response from its parsed events, in arrival order.

    * ``anthropic-messages``: SSE ``data`` objects. Usage starts in
      ``message_start.message.usage``; each ``message_delta.usage`` overrides the
      fields it carries (``output_tokens`` always, and in newer API versions the
      cumulative input and cache counts).
    * ``openai-chat``: chunks; usage is in the last chunk (empty ``choices``) when
      the request set ``stream_options={"include_usage": True}``.
    * ``openai-responses``: events; usage is in ``response.completed`` (or
      ``response.incomplete`` / ``response.failed``) under ``response.usage``.
    * ``bedrock-converse``: boto3 ``converse_stream`` events; usage is in the final
      ``{"metadata": {"usage": ...}}`` event. ``InvokeModelWithResponseStream``
      chunks of a Claude body are Anthropic events: pass ``anthropic-messages``
      with ``provider="bedrock"``.
    * ``gemini``: ``GenerateContentResponse`` chunks; the last ``usageMetadata`` wins.

    >>> usage_from_stream("openai-chat", [
    ...     {"model": "gpt-4o", "choices": [{"delta": {"content": "Hi"}}], "usage": None},
    ...     {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 1420,
    ...      "completion_tokens": 100, "prompt_tokens_details": {"cached_tokens": 1280}}},
    ... ]).output_tokens
    100
    """
    fmt = parse_format(format)
    prov = provider or fmt.provider
    if fmt is WireFormat.ANTHROPIC_MESSAGES:
        return _anthropic_stream(events, model=model, provider=prov)
    if fmt is WireFormat.OPENAI_CHAT:
        return _openai_chat_stream(events, model=model, provider=prov)
    if fmt is WireFormat.OPENAI_RESPONSES:
        return _openai_responses_stream(events, model=model, provider=prov)
    if fmt is WireFormat.BEDROCK_CONVERSE:
        return _bedrock_converse_stream(events, model=model, provider=prov)
    return _gemini_stream(events, model=model, provider=prov)


# -- the usual shapes, read without the general parser ---------------------------------------
#
# The plain shapes of OpenAI and Anthropic usage (integer counts, the sub-objects the providers
# document) are read directly; whatever else (a float count, a bool, a negative, an unknown TTL
# key, counts that do not add up) goes to the general parser, which converts it or refuses it
# with the reason. Same results: the tests compare both on generated usage.

# (prompt, output, prompt details, output details) keys of OpenAI Chat and Responses usage.
_OPENAI_KEYS = {
    WireFormat.OPENAI_CHAT: (
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    ),
    WireFormat.OPENAI_RESPONSES: (
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
    ),
}
_ANTHROPIC_TTLS = {"ephemeral_5m_input_tokens": "5m", "ephemeral_1h_input_tokens": "1h"}
_FAST_FORMATS = frozenset({*_OPENAI_KEYS, WireFormat.ANTHROPIC_MESSAGES})


def _n(value: Any) -> int:
    """An optional count as the parser reads it (None is 0); -1 when the parser must decide."""
    if value is None:
        return 0
    return value if type(value) is int and value >= 0 else -1


def _fast_usage(
    fmt: WireFormat, usage: dict[str, Any], model: str | None, provider: str
) -> CacheUsage | None:
    """``usage`` read directly, or None: the general parser must decide."""
    keys = _OPENAI_KEYS.get(fmt)
    if keys is not None:
        return _fast_openai(usage, keys, model, provider)
    if fmt is WireFormat.ANTHROPIC_MESSAGES:
        return _fast_anthropic(usage, model, provider)
    return None


def _checked(
    provider: str,
    model: str | None,
    prompt: int,
    read: int,
    write: int,
    by_ttl: dict[str, int] | None,
    output: int,
    thinking: int,
) -> CacheUsage:
    """A :class:`CacheUsage` of counts the fast readers checked as its validators would.

    Every answer's usage is read on the call path, and the validators are the first pydantic-core
    code a call runs after the answer: on the cold CPU cache of an agent's next call that costs
    more than the reading (~45 µs a call in ``benchmarks.bench_overhead``). The general parser
    still validates. The fields set are the general parser's own for the same answer (OpenAI's
    report has no TTL split, Anthropic's no thinking count), so ``model_dump(exclude_unset=True)``
    reads the same.
    """
    return CacheUsage.model_construct(
        set(_OPENAI_SET if by_ttl is None else _ANTHROPIC_SET),  # its own: the model may add to it
        provider=provider,
        model=model,
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_tokens_by_ttl={} if by_ttl is None else by_ttl,
        output_tokens=output,
        thinking_tokens=thinking,
    )


_FIELDS = ("provider", "model", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
#: The fields the general parser sets for an OpenAI and for an Anthropic answer.
_OPENAI_SET = frozenset({*_FIELDS, "thinking_tokens"})
_ANTHROPIC_SET = frozenset({*_FIELDS, "cache_write_tokens_by_ttl"})


def _fast_openai(
    raw: dict[str, Any], keys: tuple[str, str, str, str], model: str | None, provider: str
) -> CacheUsage | None:
    prompt, output = raw.get(keys[0]), raw.get(keys[1])
    if type(prompt) is not int or type(output) is not int or prompt < 0 or output < 0:
        return None
    read = write = reasoning = 0
    details = raw.get(keys[2])
    if details is not None:
        if type(details) is not dict:
            return None
        read, write = _n(details.get("cached_tokens")), _n(details.get("cache_write_tokens"))
    out_details = raw.get(keys[3])
    if out_details is not None:
        if type(out_details) is not dict:
            return None
        reasoning = _n(out_details.get("reasoning_tokens"))
    if read < 0 or write < 0 or reasoning < 0 or read + write > prompt:
        return None
    # Every field checked above as CacheUsage's validators would (ints, none negative, reads and
    # writes within the prompt): built without validating them a second time (see _checked).
    return _checked(provider, model, prompt, read, write, None, output, min(reasoning, output))


def _fast_anthropic(raw: dict[str, Any], model: str | None, provider: str) -> CacheUsage | None:
    uncached, output = raw.get("input_tokens"), raw.get("output_tokens")
    if type(uncached) is not int or type(output) is not int or uncached < 0 or output < 0:
        return None
    read, write = _n(raw.get("cache_read_input_tokens")), _n(raw.get("cache_creation_input_tokens"))
    if read < 0 or write < 0:
        return None
    by_ttl: dict[str, int] = {}
    breakdown = raw.get("cache_creation")
    if breakdown is not None:
        if type(breakdown) is not dict:
            return None
        for key, value in breakdown.items():
            ttl, n = _ANTHROPIC_TTLS.get(key), _n(value)
            if ttl is None or n < 0:
                return None
            if n:
                by_ttl[ttl] = n
        split = sum(by_ttl.values())
        if raw.get("cache_creation_input_tokens") is None:
            write = split
        elif split != write:
            return None
    # Anthropic's input_tokens counts only the tokens after the last breakpoint.
    return _checked(provider, model, uncached + read + write, read, write, by_ttl, output, 0)


# -- field access ---------------------------------------------------------------------------


def _require_mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a JSON object, got {type(value).__name__}")
    return value


def _sub(parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    """An optional nested object: absent or null gives None, anything else must be an object."""
    value = parent.get(key)
    if value is None:
        return None
    return _require_mapping(value, f"{path}.{key}")


def _count(parent: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> int:
    """A token count. Absent or null is 0 unless required; a wrong type is always an error."""
    value = parent.get(key)
    where = f"{path}.{key}"
    if value is None:
        if required:
            state = "is null" if key in parent else "is missing"
            raise ValueError(f"{where} {state}; expected a non-negative integer token count")
        return 0
    # bool is an int subclass; a JSON true is never a token count.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a non-negative integer token count, got {type(value).__name__}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{where} must be an integer token count, got {value!r}")
        value = int(value)
    if value < 0:
        raise ValueError(f"{where} must be non-negative, got {value}")
    return value


def _model(override: str | None, body: Mapping[str, Any], key: str) -> str | None:
    if override is not None:
        return override
    value = body.get(key)
    return value if isinstance(value, str) and value else None


def _check_cached_within(prompt: int, read: int, write: int, fields: str) -> None:
    if read + write > prompt:
        raise ValueError(
            f"{fields}: cached read ({read}) + write ({write}) tokens exceed the prompt "
            f"token count ({prompt}); the body is inconsistent"
        )


# -- Anthropic ------------------------------------------------------------------------------


def _anthropic_usage(usage: Mapping[str, Any], path: str, *, model: str | None, provider: str) -> CacheUsage:
    uncached = _count(usage, "input_tokens", path, required=True)
    read = _count(usage, "cache_read_input_tokens", path)
    write = _count(usage, "cache_creation_input_tokens", path)
    output = _count(usage, "output_tokens", path, required=True)
    by_ttl: dict[str, int] = {}
    breakdown = _sub(usage, "cache_creation", path)
    if breakdown is not None:
        for key in breakdown:
            match = _TTL_FIELD.match(key)
            if match is None:
                continue
            n = _count(breakdown, key, f"{path}.cache_creation")
            if n:
                by_ttl[match["ttl"]] = n
        split = sum(by_ttl.values())
        if "cache_creation_input_tokens" not in usage or usage["cache_creation_input_tokens"] is None:
            write = split
        elif split != write:
            raise ValueError(
                f"{path}.cache_creation TTL split sums to {split} but "
                f"{path}.cache_creation_input_tokens is {write}"
            )
    return _anthropic_result(provider, model, uncached, read, write, by_ttl, output)


def _anthropic_result(
    provider: str,
    model: str | None,
    uncached: int,
    read: int,
    write: int,
    by_ttl: dict[str, int],
    output: int,
) -> CacheUsage:
    """Anthropic counts as a usage."""
    return CacheUsage(
        provider=provider,
        model=model,
        # Anthropic's input_tokens counts only the tokens after the last breakpoint.
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_tokens_by_ttl=by_ttl,
        output_tokens=output,
    )


def _anthropic(body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    if body.get("type") == "error":
        raise ValueError("body is an Anthropic error object, not a message; it has no usage")
    usage = _sub(body, "usage", "body")
    if usage is None:
        raise ValueError("body.usage is missing; not an Anthropic Messages response")
    return _anthropic_usage(usage, "body.usage", model=_model(model, body, "model"), provider=provider)


def _anthropic_stream(events: Iterable[Mapping[str, Any]], *, model: str | None, provider: str) -> CacheUsage:
    merged: dict[str, Any] | None = None
    found_model: str | None = None
    for i, event in enumerate(events):
        _require_mapping(event, f"events[{i}]")
        kind = event.get("type")
        if kind == "error":
            raise ValueError(f"events[{i}] is an error event; the stream has no complete usage")
        if kind == "message_start":
            message = _sub(event, "message", f"events[{i}]")
            if message is None:
                raise ValueError(f"events[{i}].message is missing in message_start")
            usage = _sub(message, "usage", f"events[{i}].message")
            if usage is None:
                raise ValueError(f"events[{i}].message.usage is missing in message_start")
            merged = dict(usage)
            found_model = _model(None, message, "model")
        elif kind == "message_delta":
            delta_usage = _sub(event, "usage", f"events[{i}]")
            if delta_usage is None:
                continue
            if merged is None:
                raise ValueError(f"events[{i}] is a message_delta before any message_start")
            # message_delta counts are cumulative, so a present value replaces the start value.
            for key, value in delta_usage.items():
                if value is None:
                    continue
                if key == "cache_creation" and isinstance(value, Mapping):
                    prior = merged.get("cache_creation")
                    base = dict(prior) if isinstance(prior, Mapping) else {}
                    base.update({k: v for k, v in value.items() if v is not None})
                    merged[key] = base
                else:
                    merged[key] = value
    if merged is None:
        raise ValueError("no message_start event in the stream; cannot read Anthropic usage")
    return _anthropic_usage(merged, "stream.usage", model=model or found_model, provider=provider)


# -- OpenAI ---------------------------------------------------------------------------------


def _openai_chat(body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    usage = _sub(body, "usage", "body")
    if usage is None:
        raise ValueError(
            "body.usage is missing or null; for a streamed call set "
            "stream_options={'include_usage': True} and use usage_from_stream"
        )
    path = "body.usage"
    prompt = _count(usage, "prompt_tokens", path, required=True)
    completion = _count(usage, "completion_tokens", path, required=True)
    read = write = reasoning = 0
    details = _sub(usage, "prompt_tokens_details", path)
    if details is not None:
        read = _count(details, "cached_tokens", f"{path}.prompt_tokens_details")
        write = _count(details, "cache_write_tokens", f"{path}.prompt_tokens_details")
    out_details = _sub(usage, "completion_tokens_details", path)
    if out_details is not None:
        reasoning = _count(out_details, "reasoning_tokens", f"{path}.completion_tokens_details")
    _check_cached_within(prompt, read, write, f"{path}.prompt_tokens_details")
    return CacheUsage(
        provider=provider,
        model=_model(model, body, "model"),
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=completion,
        thinking_tokens=min(reasoning, completion),
    )


def _openai_chat_stream(
    events: Iterable[Mapping[str, Any]], *, model: str | None, provider: str
) -> CacheUsage:
    last: Mapping[str, Any] | None = None
    found_model: str | None = None
    for i, chunk in enumerate(events):
        _require_mapping(chunk, f"events[{i}]")
        found_model = _model(None, chunk, "model") or found_model
        if chunk.get("usage") is not None:
            _require_mapping(chunk["usage"], f"events[{i}].usage")
            last = chunk
    if last is None:
        raise ValueError(
            "no chunk carried usage; request the stream with stream_options={'include_usage': True}"
        )
    return _openai_chat(last, model=model or found_model, provider=provider)


def _openai_responses(body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    usage = _sub(body, "usage", "body")
    if usage is None:
        raise ValueError("body.usage is missing or null; not a finished Responses API response")
    path = "body.usage"
    prompt = _count(usage, "input_tokens", path, required=True)
    output = _count(usage, "output_tokens", path, required=True)
    read = write = reasoning = 0
    details = _sub(usage, "input_tokens_details", path)
    if details is not None:
        read = _count(details, "cached_tokens", f"{path}.input_tokens_details")
        write = _count(details, "cache_write_tokens", f"{path}.input_tokens_details")
    out_details = _sub(usage, "output_tokens_details", path)
    if out_details is not None:
        reasoning = _count(out_details, "reasoning_tokens", f"{path}.output_tokens_details")
    _check_cached_within(prompt, read, write, f"{path}.input_tokens_details")
    return CacheUsage(
        provider=provider,
        model=_model(model, body, "model"),
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        thinking_tokens=min(reasoning, output),
    )


_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _openai_responses_stream(
    events: Iterable[Mapping[str, Any]], *, model: str | None, provider: str
) -> CacheUsage:
    final: Mapping[str, Any] | None = None
    for i, event in enumerate(events):
        _require_mapping(event, f"events[{i}]")
        kind = event.get("type")
        if kind is not None and not isinstance(kind, str):
            raise ValueError(f"events[{i}].type must be a string, got {type(kind).__name__}")
        if kind in _RESPONSES_TERMINAL:
            response = _sub(event, "response", f"events[{i}]")
            if response is None:
                raise ValueError(f"events[{i}].response is missing in {event.get('type')}")
            final = response
    if final is None:
        raise ValueError(
            "no response.completed (or .incomplete/.failed) event in the stream; "
            "the stream was cut before the usage arrived"
        )
    return _openai_responses(final, model=model, provider=provider)


# -- Bedrock --------------------------------------------------------------------------------


def _converse_usage(usage: Mapping[str, Any], path: str, *, model: str | None, provider: str) -> CacheUsage:
    uncached = _count(usage, "inputTokens", path, required=True)
    output = _count(usage, "outputTokens", path, required=True)
    read = _count(usage, "cacheReadInputTokens", path)
    write = _count(usage, "cacheWriteInputTokens", path)
    return CacheUsage(
        provider=provider,
        model=model,
        # Converse's inputTokens, like Anthropic's input_tokens, leaves out cached tokens.
        input_tokens=uncached + read + write,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
    )


def _bedrock_converse(body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    usage = _sub(body, "usage", "body")
    if usage is None:
        raise ValueError("body.usage is missing; not a Bedrock Converse response")
    return _converse_usage(usage, "body.usage", model=model, provider=provider)


def _bedrock_converse_stream(
    events: Iterable[Mapping[str, Any]], *, model: str | None, provider: str
) -> CacheUsage:
    usage: Mapping[str, Any] | None = None
    where = ""
    for i, event in enumerate(events):
        _require_mapping(event, f"events[{i}]")
        metadata = _sub(event, "metadata", f"events[{i}]")
        if metadata is not None:
            usage = _sub(metadata, "usage", f"events[{i}].metadata")
            if usage is None:
                raise ValueError(f"events[{i}].metadata.usage is missing")
            where = f"events[{i}].metadata.usage"
    if usage is None:
        raise ValueError("no metadata event in the ConverseStream; the stream was cut early")
    return _converse_usage(usage, where, model=model, provider=provider)


# -- Gemini ---------------------------------------------------------------------------------


def _gemini_meta(body: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any] | None, str]:
    # google-genai's model_dump() without by_alias gives snake_case; accept both spellings.
    for key in ("usageMetadata", "usage_metadata"):
        meta = _sub(body, key, path)
        if meta is not None:
            return meta, f"{path}.{key}"
    return None, f"{path}.usageMetadata"


def _gcount(meta: Mapping[str, Any], camel: str, path: str, *, required: bool = False) -> int:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    key = camel if camel in meta or snake not in meta else snake
    return _count(meta, key, path, required=required)


def _gemini(body: Mapping[str, Any], *, model: str | None, provider: str) -> CacheUsage:
    meta, path = _gemini_meta(body, "body")
    if meta is None:
        raise ValueError(f"{path} is missing; not a Gemini generateContent response")
    name = body.get("name")
    if isinstance(name, str) and name.startswith("cachedContents/"):
        # Creating an explicit cache bills its tokens once, as input, and reports only a total.
        total = _gcount(meta, "totalTokenCount", path, required=True)
        return CacheUsage(
            provider=provider,
            model=_strip_models(model or _model(None, body, "model")),
            input_tokens=total,
            cache_write_tokens=total,
        )
    prompt = _gcount(meta, "promptTokenCount", path, required=True)
    # Tool-use prompt tokens are billed as input but counted outside promptTokenCount.
    tool_prompt = _gcount(meta, "toolUsePromptTokenCount", path)
    cached = _gcount(meta, "cachedContentTokenCount", path)
    candidates = _gcount(meta, "candidatesTokenCount", path)
    thoughts = _gcount(meta, "thoughtsTokenCount", path)
    _check_cached_within(prompt, cached, 0, f"{path}.cachedContentTokenCount")
    found = model or _model(None, body, "modelVersion") or _model(None, body, "model_version")
    return CacheUsage(
        provider=provider,
        model=_strip_models(found),
        input_tokens=prompt + tool_prompt,
        cache_read_tokens=cached,
        output_tokens=candidates + thoughts,
        thinking_tokens=thoughts,
    )


def _strip_models(model: str | None) -> str | None:
    if model is not None and model.startswith("models/"):
        return model[len("models/") :]
    return model


def _gemini_stream(events: Iterable[Mapping[str, Any]], *, model: str | None, provider: str) -> CacheUsage:
    last: Mapping[str, Any] | None = None
    found_model: str | None = None
    for i, chunk in enumerate(events):
        _require_mapping(chunk, f"events[{i}]")
        found_model = (
            _model(None, chunk, "modelVersion") or _model(None, chunk, "model_version") or found_model
        )
        meta, _ = _gemini_meta(chunk, f"events[{i}]")
        if meta is not None:
            last = chunk
    if last is None:
        raise ValueError("no chunk in the Gemini stream carried usageMetadata")
    return _gemini(last, model=model or found_model, provider=provider)
