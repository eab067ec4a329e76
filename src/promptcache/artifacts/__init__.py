"""Artifact caches built on the tiers: tool outputs, retrieval results and model responses.

* :class:`ToolOutputCache` serves ``pure``/``read_only`` tool outputs and lets writes invalidate tags;
* :class:`RetrievalCache` serves retrieved documents, re-authorized on every hit;
* :class:`ResponseCache` serves whole responses only for requests the policy deems deterministic;
* :func:`open_store` turns ``store=`` (None, a URL, a path, a client) into a :class:`TieredStore`.

All three are framework-agnostic (plain dicts in, plain dicts out), never write
a secret to any tier, and never fail a call because the cache failed.
"""

from promptcache.artifacts._common import (
    ArtifactStats,
    LookupReason,
    LookupResult,
    Outcome,
    Served,
    TagTemplate,
    Uncacheable,
    data_classes_of,
)
from promptcache.artifacts.responses import TRANSPORT_FIELDS, Eligibility, ResponseCache
from promptcache.artifacts.retrieval import (
    Authorizer,
    Document,
    RetrievalCache,
    RetrieverSpec,
    normalize_query,
)
from promptcache.artifacts.store import open_store
from promptcache.artifacts.tools import McpAnnotations, SideEffect, ToolOutputCache, ToolSpec, tool_tag

__all__ = [
    "TRANSPORT_FIELDS",
    "ArtifactStats",
    "Authorizer",
    "Document",
    "Eligibility",
    "LookupReason",
    "LookupResult",
    "McpAnnotations",
    "Outcome",
    "ResponseCache",
    "RetrievalCache",
    "RetrieverSpec",
    "Served",
    "SideEffect",
    "TagTemplate",
    "ToolOutputCache",
    "ToolSpec",
    "Uncacheable",
    "data_classes_of",
    "normalize_query",
    "open_store",
    "tool_tag",
]
