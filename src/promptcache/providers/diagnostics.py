"""Anthropic cache diagnostics: the provider's own verdict on a prompt-cache miss.

platform.claude.com/docs/en/build-with-claude/cache-diagnostics (read 2026-12-07; the feature
is GA there, and the ``cache-diagnosis-2026-04-07`` beta header is no longer required):

* every request of a conversation carries ``diagnostics: {"previous_message_id": ...}``:
  ``null`` on the first turn (the opt-in, with nothing to compare), the ``id`` of the previous
  response of the same conversation after. The API stores a fingerprint (hashes and token
  estimates, never prompt text) per response ``id`` only for requests that carry the object,
  so a request without it breaks the chain;
* the answer carries ``diagnostics.cache_miss_reason``: where the new request first diverged
  from the previous one (``model_changed``, ``system_changed``, ``tools_changed``,
  ``messages_changed``), or that the previous message is unknown
  (``previous_message_not_found``) or the comparison is ``unavailable``; ``null`` while the
  comparison is pending. The types are the anthropic SDK's (0.125: ``anthropic.types.beta``
  ``BetaDiagnostics``, ``BetaCacheMiss*``);
* Claude API only: "not supported on Amazon Bedrock or Vertex AI" (:func:`diagnosable`).

This module reads the verdict (:func:`diagnosis_from_answer`, :func:`diagnosis_from_stream`)
into a :class:`Diagnosis` whose reason is a :class:`~promptcache.figures.ProviderMissReason`,
and keeps each conversation's last response id (:class:`ResponseChains`). The engine sends the
object (``PromptCache(cache_diagnostics=True)``); the transport reads the answer back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from promptcache.figures import ProviderMissReason

__all__ = [
    "DIAGNOSTICS_FIELD",
    "Diagnosis",
    "ResponseChains",
    "diagnosable",
    "diagnosis_from_answer",
    "diagnosis_from_stream",
    "response_id_from_answer",
    "response_id_from_stream",
    "with_diagnostics",
]

DIAGNOSTICS_FIELD = "diagnostics"
"""The request field (and the answer's) of Anthropic cache diagnostics."""

# Anthropic's own values only: the enum also holds OpenAI's, which this API never sends.
_REASONS = {
    r.value: r
    for r in (
        ProviderMissReason.MODEL_CHANGED,
        ProviderMissReason.SYSTEM_CHANGED,
        ProviderMissReason.TOOLS_CHANGED,
        ProviderMissReason.MESSAGES_CHANGED,
        ProviderMissReason.PREVIOUS_MESSAGE_NOT_FOUND,
        ProviderMissReason.UNAVAILABLE,
    )
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The provider's verdict on one request: why it could not reuse the previous request's
    prefix, and about how many input tokens it would otherwise have read from cache (None where
    the provider gives no count)."""

    reason: ProviderMissReason
    missed_tokens: int | None = None

    def __str__(self) -> str:
        n = f", ~{self.missed_tokens} tokens not read from cache" if self.missed_tokens else ""
        return f"provider: {self.reason.value}{n}"


def diagnosable(model: str) -> bool:
    """Whether requests for ``model`` reach the Claude API itself, the only platform that
    answers cache diagnostics (Bedrock ids and ARNs, and Vertex ids ``name@date``, do not).

    >>> diagnosable("claude-opus-5-5"), diagnosable("us.anthropic.claude-opus-5-5")
    (True, False)
    >>> diagnosable("claude-sonnet-4-5@20250929"), diagnosable("arn:aws:bedrock:us-east-1:1:x/y")
    (False, False)
    """
    m = model.strip()
    return m.startswith("claude-") and "@" not in m and ":" not in m


def _diagnosis(value: Any) -> Diagnosis | None:
    if not isinstance(value, Mapping):
        return None
    reason = value.get("cache_miss_reason")
    if not isinstance(reason, Mapping):
        return None  # null: no verdict (yet)
    kind = _REASONS.get(str(reason.get("type")))
    if kind is None:
        return None  # a reason this version does not know: not guessed
    missed = reason.get("cache_missed_input_tokens")
    return Diagnosis(kind, missed if type(missed) is int and missed >= 0 else None)


def diagnosis_from_answer(body: Mapping[str, Any]) -> Diagnosis | None:
    """The verdict in a Messages answer (``body["diagnostics"]``), or None.

    >>> diagnosis_from_answer({"id": "msg_1", "diagnostics": {"cache_miss_reason": {
    ...     "type": "tools_changed", "cache_missed_input_tokens": 4100}}})
    Diagnosis(reason=<ProviderMissReason.TOOLS_CHANGED: 'tools_changed'>, missed_tokens=4100)
    """
    return _diagnosis(body.get(DIAGNOSTICS_FIELD))


def response_id_from_answer(body: Mapping[str, Any]) -> str | None:
    """The ``id`` of a Messages answer (what the next request names as ``previous_message_id``)."""
    found = body.get("id")
    return found if isinstance(found, str) and found else None


def _stream_message(events: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for event in events:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, Mapping):
                yield message
        elif kind == "message_delta":
            yield event


def response_id_from_stream(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The message ``id`` of a streamed answer, from its ``message_start`` event."""
    for part in _stream_message(events):
        found = response_id_from_answer(part)
        if found is not None:
            return found
    return None


def diagnosis_from_stream(events: Iterable[Mapping[str, Any]]) -> Diagnosis | None:
    """The verdict of a streamed answer: in ``message_start``'s message, or a later
    ``message_delta`` (the last one present wins: a verdict may come after a pending one)."""
    found: Diagnosis | None = None
    for part in _stream_message(events):
        d = _diagnosis(part.get(DIAGNOSTICS_FIELD))
        if d is not None:
            found = d
    return found


class ResponseChains:
    """Each conversation's last response id, for the next request's ``previous_message_id``.

    Keyed by (tenant, conversation id) so two tenants never share a chain; at most ``limit``
    conversations (the least recently used go first). A conversation with no answer read yet (or
    forgotten) has none: its next request opts in again (``null``) rather than naming a stale id.
    Thread-safe.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._d: OrderedDict[tuple[str, bytes], str | None] = OrderedDict()
        self._limit = max(1, limit)
        self._lock = threading.Lock()

    def previous(self, key: tuple[str, bytes]) -> str | None:
        """The last response id of conversation ``key`` (None: first turn, or not answered)."""
        with self._lock:
            found = self._d.get(key)
            if key in self._d:
                self._d.move_to_end(key)
            return found

    def answered(self, key: tuple[str, bytes], response_id: str) -> None:
        """Record ``response_id`` as conversation ``key``'s last answer."""
        with self._lock:
            self._d[key] = response_id
            self._d.move_to_end(key)
            while len(self._d) > self._limit:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


def with_diagnostics(
    body: dict[str, Any], chains: ResponseChains, key: tuple[str, bytes], model: str
) -> tuple[dict[str, Any], bool, str | None]:
    """``body`` carrying ``diagnostics.previous_message_id`` for conversation ``key``, whether it
    was added, and a note when it was not.

    The caller's own ``diagnostics`` is kept as sent (its chain is the caller's); a model served
    by Bedrock or Vertex gets none (:func:`diagnosable`).
    """
    if DIAGNOSTICS_FIELD in body:
        return body, False, "diagnostics set by the caller: kept"
    if not diagnosable(model):
        return body, False, f"{model}: cache diagnostics are answered on the Claude API only"
    return {**body, DIAGNOSTICS_FIELD: {"previous_message_id": chains.previous(key)}}, True, None
