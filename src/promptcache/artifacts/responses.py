"""The response cache: final model responses, served only when the policy says they are deterministic.

*Cache prompt components aggressively, final responses selectively.* A
request is eligible only when every rule of ``policy.response_cache`` holds:
an explicit temperature at or below ``max_temperature`` (an unset temperature
is the provider's default, which is not low), a structured-output schema when
``require_structured_output``, no tools offered unless ``allow_with_tools``,
not streamed, and no sensitive data class (secret or PII) anywhere in the
request. The key is the tenant plus the full canonical request, minus the
fields that only carry tracing or transport (see ``TRANSPORT_FIELDS``).

>>> from promptcache.tiers import TieredStore
>>> rc = ResponseCache(TieredStore())
>>> rc.check({"model": "m", "messages": [], "temperature": 0.9}).reason
'temperature 0.9 above the policy maximum 0.2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from promptcache.artifacts._async.responses import AsyncResponseCalls
from promptcache.artifacts._common import (
    ArtifactStats,
    Counters,
    LookupResult,
    contract_for,
    data_classes_of,
    encode_scanned,
    key_for,
    key_refusal,
    refusal,
)
from promptcache.artifacts._flow import Call, keep, refuse
from promptcache.artifacts._sync.responses import SyncResponseCalls
from promptcache.canonical import CanonicalizationError
from promptcache.figures import LookupReason
from promptcache.policy import EntryType as PolicyEntry
from promptcache.policy import Policy
from promptcache.tiers.entry import EntryType
from promptcache.tiers.outcome import Produced
from promptcache.tiers.router import TieredStore

__all__ = ["TRANSPORT_FIELDS", "Eligibility", "ResponseCache"]

#: Request fields that never enter the key: tracing, transport and provider-cache routing only.
TRANSPORT_FIELDS = frozenset(
    {
        "stream_options",
        "timeout",
        "extra_headers",
        "extra_query",
        "request_id",
        "idempotency_key",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


class Eligibility(BaseModel):
    """Whether a request's response may be cached, and why (one reason, the first rule that failed).

    ``reason`` is the rule in words; ``denial`` is the same refusal as the
    :class:`~promptcache.figures.LookupReason` the lookup reports (None when allowed).
    """

    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: str
    ttl_seconds: int = 0
    denial: LookupReason | None = None


def _ineligible(reason: str, denial: LookupReason = LookupReason.INELIGIBLE) -> Eligibility:
    """A refusal: ``reason`` in words, ``denial`` as the lookup will report it."""
    return Eligibility(allowed=False, reason=reason, denial=denial)


def _has_schema(request: Mapping[str, Any]) -> bool:
    # the structured-output switches of the providers promptcache speaks
    rf = request.get("response_format")
    if isinstance(rf, Mapping) and rf.get("type") == "json_schema":
        return True  # plain JSON mode ("json_object") has no schema: not enough
    text = request.get("text")
    if isinstance(text, Mapping):
        fmt = text.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            return True
    of = request.get("output_format") or request.get("output_config")
    if isinstance(of, Mapping) and (of.get("type") == "json_schema" or "schema" in of or "format" in of):
        return True
    for gc_name in ("generationConfig", "generation_config", "config"):
        gc = request.get(gc_name)
        if isinstance(gc, Mapping) and any(
            gc.get(k)
            for k in ("responseSchema", "response_schema", "responseJsonSchema", "response_json_schema")
        ):
            return True
    return False


def _temperature(request: Mapping[str, Any]) -> Any:
    if "temperature" in request:
        return request["temperature"]
    for gc_name in ("generationConfig", "generation_config", "config", "inferenceConfig"):
        gc = request.get(gc_name)
        if isinstance(gc, Mapping) and "temperature" in gc:
            return gc["temperature"]
    return None


def _offers_tools(request: Mapping[str, Any]) -> bool:
    if request.get("tools") or request.get("functions"):
        return True
    tc = request.get("toolConfig")
    return isinstance(tc, Mapping) and bool(tc.get("tools"))


class ResponseCache(SyncResponseCalls, AsyncResponseCalls):
    """Caches whole model responses for eligible requests (see the module docstring).

    ``call`` and ``acall`` are written once (``_async/responses.py``) and the sync one generated.
    """

    def __init__(self, store: TieredStore, policy: Policy | None = None) -> None:
        """Use ``store`` under ``policy`` (default policy if None)."""
        self.store = store
        self.policy = policy if policy is not None else Policy()
        self._counters = Counters()

    def stats(self) -> ArtifactStats:
        """Counters of this cache."""
        return self._counters.snapshot()

    def check(self, request: Mapping[str, Any], *, ttl: int | None = None) -> Eligibility:
        """May the response to ``request`` be served from cache? The reason either way."""
        rule = self.policy.response_cache
        temp = _temperature(request)
        if temp is None:
            return _ineligible("no temperature set (the provider default is not low)")
        if isinstance(temp, bool) or not isinstance(temp, int | float):
            return _ineligible("temperature is not a number")
        if temp > rule.max_temperature:
            return _ineligible(f"temperature {temp} above the policy maximum {rule.max_temperature}")
        if request.get("stream"):
            return _ineligible("streamed responses are not cached")
        n = request.get("n", 1)
        if isinstance(n, int) and n > 1:
            return _ineligible("several choices (n > 1) are not cached")
        if rule.require_structured_output and not _has_schema(request):
            return _ineligible("no structured output schema (policy requires one)")
        if _offers_tools(request) and not rule.allow_with_tools:
            return _ineligible("tools offered (side effects possible; policy forbids)")
        classes = data_classes_of(request)
        if classes:
            found = ", ".join(sorted(classes))
            return _ineligible(f"sensitive data in the request: {found}", refusal(classes))
        d = self.policy.decide(PolicyEntry.MODEL_RESPONSE, ttl=ttl)
        if not d.allowed:
            return _ineligible(d.reason, LookupReason.POLICY_DENIED)
        return Eligibility(allowed=True, reason=d.reason, ttl_seconds=d.ttl_seconds)

    def _plan(self, request: Mapping[str, Any], tenant: str, ttl: int | None) -> Call[Any] | LookupResult:
        elig = self.check(request, ttl=ttl)
        if not elig.allowed:
            self._counters.add("bypassed")
            denial = elig.denial or LookupReason.INELIGIBLE
            return LookupResult(hit=False, reason=denial, detail=elig.reason)
        keyed = {k: v for k, v in request.items() if k not in TRANSPORT_FIELDS}
        model = str(request.get("model") or request.get("modelId") or "unknown")
        try:
            contract = contract_for(self.policy, tenant, "tenant", model)
            key = key_for(contract, EntryType.RESPONSE, keyed, where="request")
        except CanonicalizationError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=LookupReason.UNKEYABLE, detail=str(exc).split(";")[0])
        except ValueError as exc:
            self._counters.add("unkeyable")
            return LookupResult(hit=False, reason=key_refusal(exc), detail=str(exc))
        return Call(
            store=self.store,
            counters=self._counters,
            kind=EntryType.RESPONSE,
            key=key,
            tenant=tenant,
            tags=(f"model:{model}",),
            planned_ttl_s=elig.ttl_seconds,
            prepare=lambda value: self._prepare(value, ttl),
            decode=lambda v: v,
            policy=self.policy.identity,
        )

    def _prepare(self, value: Any, ttl: int | None) -> Produced:
        try:
            payload, classes = encode_scanned(EntryType.RESPONSE, value)
        except TypeError:
            return refuse(LookupReason.UNSERIALIZABLE, "the response")
        d = self.policy.decide(PolicyEntry.MODEL_RESPONSE, data_classes=classes, ttl=ttl)
        if not d.allowed:
            return refuse(refusal(classes), d.reason)
        return keep(payload, d.ttl_seconds, d.reason)
