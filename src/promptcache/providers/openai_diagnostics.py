"""OpenAI prompt cache diagnostics: the provider's own verdict on a Responses API cache miss.

developers.openai.com/api/docs/guides/prompt-caching/diagnostics (read 2026-12-07):

* opt in per request with ``prompt_cache_options.comparison_response_id`` set to the ``id`` of
  an earlier completed response of the same organization (the preceding turn of the
  conversation); the first turn omits it. It only requests the comparison: it loads nothing
  and changes no caching behaviour;
* the answer carries ``prompt_cache_diagnostics`` (in a stream, on ``response.completed``'s
  ``response``): ``{"type": "cache_hit"}``, ``{"type": "cache_miss", "reason": ...,
  "cache_missed_tokens": n, "comparison_reusable_tokens": m}`` (the last one optional),
  ``comparison_response_not_found`` or ``unavailable``;
* Responses API only, GPT-5.6 and later: the models the catalog marks ``explicit``
  (:func:`diagnosable`); no extra charge; records hold hashes and token estimates, never prompt
  text, so nothing here stores or logs any.

The installed ``openai`` SDK (2.54) predates the field: its ``PromptCacheOptions`` TypedDict has
``mode`` and ``ttl`` only, and the SDK sends the extra key as given. This module adds the field
(:func:`with_comparison`) and reads the verdict (:func:`diagnosis_from_response`,
:func:`diagnosis_from_stream`) into an :class:`OpenAIDiagnosis` whose ``outcome`` and ``reason``
are enum values, never free text; :func:`miss_diagnosis` turns it into the provider-neutral
:class:`~promptcache.providers.diagnostics.Diagnosis` that ``plan.explain()`` and the figures
carry. With ``PromptCache(cache_diagnostics=True)`` the engine names each conversation's previous
answer (:class:`~promptcache.providers.diagnostics.ResponseChains`) and the transport reads the
answer's id and verdict back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from promptcache.catalog import Catalog
from promptcache.figures import ProviderMissReason
from promptcache.formats import WireFormat
from promptcache.providers.diagnostics import Diagnosis
from promptcache.providers.hints import ttl_options

__all__ = [
    "COMPARISON_FIELD",
    "DIAGNOSTICS_FIELD",
    "CacheMissReason",
    "DiagnosticOutcome",
    "OpenAIDiagnosis",
    "diagnosable",
    "diagnosis_from_response",
    "diagnosis_from_stream",
    "miss_diagnosis",
    "response_id",
    "response_id_from_stream",
    "with_comparison",
]

COMPARISON_FIELD = "comparison_response_id"
"""The key inside ``prompt_cache_options`` that names the baseline response."""
DIAGNOSTICS_FIELD = "prompt_cache_diagnostics"
"""The answer's field holding the verdict."""


class DiagnosticOutcome(StrEnum):
    """``prompt_cache_diagnostics.type``: the comparison's outcome (the guide, "Understand the
    response")."""

    CACHE_HIT = "cache_hit"
    CACHE_MISS = "cache_miss"
    COMPARISON_RESPONSE_NOT_FOUND = "comparison_response_not_found"
    UNAVAILABLE = "unavailable"


class CacheMissReason(StrEnum):
    """``prompt_cache_diagnostics.reason`` of a ``cache_miss`` (the guide, "Fix a cache miss"):
    the first classified cause."""

    MODEL_CHANGED = "model_changed"
    PROMPT_CACHE_KEY_CHANGED = "prompt_cache_key_changed"
    SERVICE_TIER_CHANGED = "service_tier_changed"
    TOOLS_CHANGED = "tools_changed"
    TEXT_FORMAT_CHANGED = "text_format_changed"
    REASONING_EFFORT_CHANGED = "reasoning_effort_changed"
    VERBOSITY_CHANGED = "verbosity_changed"
    CONTEXT_COMPACTED = "context_compacted"
    INPUT_CHANGED = "input_changed"


_OUTCOMES = {o.value: o for o in DiagnosticOutcome}
_REASONS = {r.value: r for r in CacheMissReason}


@dataclass(frozen=True, slots=True)
class OpenAIDiagnosis:
    """The provider's verdict on one request compared with its baseline response.

    ``reason`` is set on a miss whose cause this version knows (None otherwise: an unknown
    reason is not guessed); ``missed_tokens`` and ``reusable_tokens`` are the provider's
    estimates (``cache_missed_tokens``, ``comparison_reusable_tokens``), None where absent.
    """

    outcome: DiagnosticOutcome
    reason: CacheMissReason | None = None
    missed_tokens: int | None = None
    reusable_tokens: int | None = None

    def __str__(self) -> str:
        if self.outcome is not DiagnosticOutcome.CACHE_MISS:
            return f"provider: {self.outcome.value}"
        why = self.reason.value if self.reason is not None else "unclassified"
        n = f", ~{self.missed_tokens} tokens not reused" if self.missed_tokens else ""
        return f"provider: cache_miss ({why}{n})"


def diagnosable(model: str, fmt: WireFormat, catalog: Catalog | None = None) -> bool:
    """Whether the provider answers diagnostics for ``model`` spoken through ``fmt``: the
    Responses API on a model the catalog marks ``explicit`` (GPT-5.6 and later).

    >>> diagnosable("gpt-5.6-sol", WireFormat.OPENAI_RESPONSES)
    True
    >>> diagnosable("gpt-5.6-sol", WireFormat.OPENAI_CHAT)
    False
    >>> diagnosable("gpt-5.5", WireFormat.OPENAI_RESPONSES)
    False
    """
    return fmt is WireFormat.OPENAI_RESPONSES and "explicit" in ttl_options(model, fmt, catalog)


def with_comparison(
    body: Mapping[str, Any], previous_response_id: str | None
) -> tuple[dict[str, Any], str | None]:
    """``body`` asking for the comparison with ``previous_response_id``, and a note when it was
    not added. The first turn (no previous id) is sent as is. A caller's own
    ``comparison_response_id`` is kept; a body carrying the deprecated ``prompt_cache_retention``
    gets none, since adding ``prompt_cache_options`` would pair the two fields.

    >>> with_comparison({"model": "gpt-5.6-sol", "input": "hi"}, "resp_1")[0]["prompt_cache_options"]
    {'comparison_response_id': 'resp_1'}
    """
    out = dict(body)
    if not previous_response_id:
        return out, None
    opts = out.get("prompt_cache_options")
    if isinstance(opts, Mapping) and COMPARISON_FIELD in opts:
        return out, "comparison_response_id set by the caller: kept"
    if opts is None and "prompt_cache_retention" in out:
        return (
            out,
            "prompt_cache_retention set: no comparison_response_id (it would need prompt_cache_options)",
        )
    out["prompt_cache_options"] = {
        **(opts if isinstance(opts, Mapping) else {}),
        COMPARISON_FIELD: previous_response_id,
    }
    return out, None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _diagnosis(value: Any) -> OpenAIDiagnosis | None:
    if not isinstance(value, Mapping):
        return None
    outcome = _OUTCOMES.get(str(value.get("type")))
    if outcome is None:
        return None  # an outcome this version does not know: not guessed
    return OpenAIDiagnosis(
        outcome,
        _REASONS.get(str(value.get("reason"))) if outcome is DiagnosticOutcome.CACHE_MISS else None,
        _int(value.get("cache_missed_tokens")),
        _int(value.get("comparison_reusable_tokens")),
    )


def diagnosis_from_response(body: Mapping[str, Any]) -> OpenAIDiagnosis | None:
    """The verdict in a Responses API answer, or None (none asked, or an unknown shape).

    >>> str(diagnosis_from_response({"prompt_cache_diagnostics": {"type": "cache_miss",
    ...     "reason": "tools_changed", "comparison_reusable_tokens": 5629, "cache_missed_tokens": 5629}}))
    'provider: cache_miss (tools_changed, ~5629 tokens not reused)'
    """
    return _diagnosis(body.get(DIAGNOSTICS_FIELD))


def _completed(events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    found: Mapping[str, Any] | None = None
    for event in events:
        if event.get("type") == "response.completed" and isinstance(event.get("response"), Mapping):
            found = event["response"]
    return found


def diagnosis_from_stream(events: Iterable[Mapping[str, Any]]) -> OpenAIDiagnosis | None:
    """The verdict of a streamed answer, read from ``response.completed``'s ``response``."""
    done = _completed(events)
    return None if done is None else diagnosis_from_response(done)


def response_id(body: Mapping[str, Any]) -> str | None:
    """The answer's ``id``: what the conversation's next request names as its baseline."""
    found = body.get("id")
    return found if isinstance(found, str) and found else None


def response_id_from_stream(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The response ``id`` of a streamed answer: from ``response.completed``, else from the first
    event carrying the response (``response.created``), so an unfinished stream still chains."""
    done = _completed(events)
    found = None if done is None else response_id(done)
    if found is not None:
        return found
    for event in events:
        inner = event.get("response")
        if isinstance(inner, Mapping) and (found := response_id(inner)) is not None:
            return found
    return None


# The verdict's reason under the provider-neutral enum: one member where Anthropic's
# diagnostics mean the same thing (model, tools), OpenAI's own otherwise.
_MISS_REASONS = {
    CacheMissReason.MODEL_CHANGED: ProviderMissReason.MODEL_CHANGED,
    CacheMissReason.PROMPT_CACHE_KEY_CHANGED: ProviderMissReason.PROMPT_CACHE_KEY_CHANGED,
    CacheMissReason.SERVICE_TIER_CHANGED: ProviderMissReason.SERVICE_TIER_CHANGED,
    CacheMissReason.TOOLS_CHANGED: ProviderMissReason.TOOLS_CHANGED,
    CacheMissReason.TEXT_FORMAT_CHANGED: ProviderMissReason.TEXT_FORMAT_CHANGED,
    CacheMissReason.REASONING_EFFORT_CHANGED: ProviderMissReason.REASONING_EFFORT_CHANGED,
    CacheMissReason.VERBOSITY_CHANGED: ProviderMissReason.VERBOSITY_CHANGED,
    CacheMissReason.CONTEXT_COMPACTED: ProviderMissReason.CONTEXT_COMPACTED,
    CacheMissReason.INPUT_CHANGED: ProviderMissReason.INPUT_CHANGED,
}
_OTHER_OUTCOMES = {
    DiagnosticOutcome.COMPARISON_RESPONSE_NOT_FOUND: ProviderMissReason.PREVIOUS_MESSAGE_NOT_FOUND,
    DiagnosticOutcome.UNAVAILABLE: ProviderMissReason.UNAVAILABLE,
}


def miss_diagnosis(found: OpenAIDiagnosis | None) -> Diagnosis | None:
    """``found`` as the provider-neutral verdict ``plan.explain()`` and the figures carry, or None:
    a ``cache_hit`` is no miss, and a miss whose reason this version does not know is not guessed.
    ``comparison_response_not_found`` becomes ``previous_message_not_found`` (the baseline is
    unknown to the provider, as Anthropic says it).

    >>> miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.CACHE_MISS, CacheMissReason.TOOLS_CHANGED, 5629))
    Diagnosis(reason=<ProviderMissReason.TOOLS_CHANGED: 'tools_changed'>, missed_tokens=5629)
    >>> miss_diagnosis(OpenAIDiagnosis(DiagnosticOutcome.CACHE_HIT)) is None
    True
    """
    if found is None:
        return None
    if found.outcome is DiagnosticOutcome.CACHE_MISS:
        reason = _MISS_REASONS.get(found.reason) if found.reason is not None else None
        return None if reason is None else Diagnosis(reason, found.missed_tokens)
    other = _OTHER_OUTCOMES.get(found.outcome)
    return None if other is None else Diagnosis(other)
