"""Gemini explicit cached contents: create, reuse, refresh or let expire, delete.

Gemini caches long prefixes implicitly, but an explicit cache (``cachedContents``) is the
one that guarantees the discount. :class:`GeminiCacheManager` creates one when the static
prefix of a ``generateContent`` body (``systemInstruction`` + ``tools`` + ``toolConfig`` +
the leading stable ``contents``) clears the model's minimum (catalog), keeps the handle in
an in-memory registry keyed by tenant and prefix key, rewrites later requests with the same
prefix to reference it, refreshes its TTL on use when asked to (otherwise lets it expire),
deletes it on invalidation, and accounts what it costs to store.

Gemini refuses a request that names ``cachedContent`` and also carries ``systemInstruction``,
``tools`` or ``toolConfig``; those therefore move *into* the cached content at creation and
are removed from every request that uses it. The prefix key covers them, so a request with
other tools or another system instruction gets its own cache, never a wrong one.

HTTP goes through a :class:`GeminiTransport`: :class:`HttpxGeminiTransport` speaks the REST
API (``POST /cachedContents``, ``PATCH /{name}?updateMask=ttl``, ``DELETE /{name}``); any
object with the same three methods works (e.g. one wrapping ``google.genai``'s
``client.caches``).

Expiry is tracked on the local clock from the TTL asked for, not from the server's
``expireTime``, so clock skew cannot make a dead handle look alive; a handle is not reused
in its last ``safety_s`` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from promptcache.catalog import Catalog
from promptcache.formats import WireFormat
from promptcache.pricing import gemini_storage_cost
from promptcache.providers.hints import min_cacheable_tokens
from promptcache.providers.usage import usage_from_response
from promptcache.tokens import count_text
from promptcache.usage import CacheUsage

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CachedContentHandle",
    "GeminiCacheManager",
    "GeminiPrepared",
    "GeminiTransport",
    "GenAIClientTransport",
    "HttpxGeminiTransport",
]

log = logging.getLogger(__name__)

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
# Fields Gemini refuses next to cachedContent: they live inside the cached content instead.
MOVED_FIELDS = ("systemInstruction", "tools", "toolConfig")


class GeminiTransport(Protocol):
    """The three cachedContents calls, each taking and returning the REST JSON."""

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST cachedContents``; returns the created resource (``name``, ``usageMetadata``)."""
        ...

    def update_ttl(self, name: str, ttl: str) -> dict[str, Any]:
        """``PATCH {name}?updateMask=ttl`` with ``{"ttl": ttl}``."""
        ...

    def delete(self, name: str) -> None:
        """``DELETE {name}``."""
        ...


class HttpxGeminiTransport:
    """:class:`GeminiTransport` over httpx against the Gemini REST API."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        api_key: str | None = None,
        base_url: str = GEMINI_BASE_URL,
    ) -> None:
        import httpx  # only needed by this transport; the core does not depend on httpx

        self._client = client if client is not None else httpx.Client(timeout=30.0)
        self._headers = {"x-goog-api-key": api_key} if api_key else {}
        self._base = base_url.rstrip("/")

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self._client.post(f"{self._base}/cachedContents", json=body, headers=self._headers)
        r.raise_for_status()
        return dict(r.json())

    def update_ttl(self, name: str, ttl: str) -> dict[str, Any]:
        r = self._client.patch(
            f"{self._base}/{name}", params={"updateMask": "ttl"}, json={"ttl": ttl}, headers=self._headers
        )
        r.raise_for_status()
        return dict(r.json())

    def delete(self, name: str) -> None:
        r = self._client.delete(f"{self._base}/{name}", headers=self._headers)
        r.raise_for_status()


class GenAIClientTransport:
    """:class:`GeminiTransport` over a ``google.genai.Client``: cached contents are created,
    refreshed and deleted with the client's own credentials and base URL (Gemini API keys and
    Vertex AI alike)."""

    def __init__(self, client: Any) -> None:
        # The API client sends REST JSON as it is (``request(method, path, body)``): the
        # manager already holds the cachedContents bodies in that shape.
        self._api = client._api_client

    def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self._api.request(method, path, body)
        text = getattr(resp, "body", None) or "{}"
        out = orjson.loads(text)
        return out if isinstance(out, dict) else {}

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST cachedContents``."""
        return self._call("post", "cachedContents", body)

    def update_ttl(self, name: str, ttl: str) -> dict[str, Any]:
        """``PATCH {name}?updateMask=ttl``."""
        return self._call("patch", f"{name}?updateMask=ttl", {"ttl": ttl})

    def delete(self, name: str) -> None:
        """``DELETE {name}``."""
        self._call("delete", name, {})


@dataclass(slots=True)
class CachedContentHandle:
    """One explicit cache: its server name, what it holds and how long it lives."""

    name: str
    model: str
    tenant: str
    prefix_key: str
    tokens: int
    created_at: float
    expires_at: float
    tags: frozenset[str] = frozenset()
    deleted_at: float | None = None
    refreshes: int = 0

    def alive(self, now: float, safety_s: float = 0.0) -> bool:
        """Not deleted and at least ``safety_s`` seconds from expiry."""
        return self.deleted_at is None and now < self.expires_at - safety_s

    def storage_seconds(self, now: float) -> float:
        """Seconds stored so far: from creation to deletion, expiry or now, whichever is first."""
        end = min(self.expires_at, now if self.deleted_at is None else self.deleted_at)
        return max(0.0, end - self.created_at)

    def storage_cost(self, now: float, *, catalog: Catalog | None = None) -> float:
        """What storing it has cost so far (catalog storage price per token-hour)."""
        return gemini_storage_cost(self.model, self.tokens, self.storage_seconds(now), catalog=catalog)


@dataclass(slots=True)
class GeminiPrepared:
    """A ``generateContent`` body rewritten to use a cache (or unchanged), and why."""

    body: dict[str, Any]
    handle: CachedContentHandle | None = None
    created: bool = False
    refreshed: bool = False
    create_usage: CacheUsage | None = None
    notes: list[str] = field(default_factory=list)


def _bare_model(model: str) -> str:
    return model.removeprefix("models/")


def _texts(value: Any) -> Iterable[str]:
    """Every text part in a JSON value (for counting tokens)."""
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            yield value["text"]
        for k, v in value.items():
            if k != "text":
                yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


class GeminiCacheManager:
    """Creates, reuses, refreshes and deletes Gemini explicit caches for stable prefixes.

    ``ttl_s`` is the TTL asked for at creation (Gemini's default is one hour);
    ``refresh_margin_s``, when set, extends a handle back to ``ttl_s`` whenever it is used
    with less than that many seconds left (otherwise an unused cache simply expires).
    ``count_tokens`` estimates a prefix's tokens (default: promptcache's offline counter).
    """

    def __init__(
        self,
        transport: GeminiTransport,
        *,
        ttl_s: int = 3600,
        refresh_margin_s: float | None = None,
        safety_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        catalog: Catalog | None = None,
        count_tokens: Callable[[str, str], int] | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.transport = transport
        self.ttl_s = ttl_s
        self.refresh_margin_s = refresh_margin_s
        self.safety_s = safety_s
        self.clock = clock
        self.catalog = catalog
        self._count = count_tokens or (lambda text, model: count_text(text, model, "gemini"))
        self._handles: dict[tuple[str, str], CachedContentHandle] = {}
        self._retired: list[CachedContentHandle] = []
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    # -- keys ------------------------------------------------------------------------------

    @staticmethod
    def prefix_key(model: str, prefix: Mapping[str, Any]) -> str:
        """The SHA-256 of the model and the cacheable fields, in canonical JSON."""
        doc = {"model": _bare_model(model), **{k: v for k, v in prefix.items() if v is not None}}
        return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @staticmethod
    def split(
        body: Mapping[str, Any], stable_contents: int | None = None
    ) -> tuple[dict[str, Any], list[Any]]:
        """(the cacheable prefix fields, the contents that stay in the request).

        ``stable_contents`` is how many leading contents are stable; by default all but the
        last when the last is a user turn (the question of this call), else all but none.
        """
        contents = list(body.get("contents") or [])
        if stable_contents is None:
            last = contents[-1] if contents else None
            stable_contents = (
                len(contents) - 1 if isinstance(last, dict) and last.get("role") == "user" else 0
            )
        stable_contents = max(0, min(stable_contents, len(contents)))
        prefix: dict[str, Any] = {k: body[k] for k in MOVED_FIELDS if k in body}
        if stable_contents:
            prefix["contents"] = contents[:stable_contents]
        return prefix, contents[stable_contents:]

    # -- the request path ------------------------------------------------------------------

    def prepare(
        self,
        body: Mapping[str, Any],
        *,
        tenant: str,
        model: str | None = None,
        stable_contents: int | None = None,
        tags: Iterable[str] = (),
    ) -> GeminiPrepared:
        """Rewrite ``body`` to use the explicit cache of its static prefix, creating it if needed.

        A prefix below the model's minimum is left to implicit caching (body unchanged). A
        body that already names ``cachedContent`` is the caller's and is left as it is.
        """
        if not tenant:
            raise ValueError("tenant is required: explicit caches are never shared across tenants")
        m = model or body.get("model")
        if not isinstance(m, str) or not m:
            raise ValueError("gemini: no model in the body; pass model=...")
        m = _bare_model(m)
        if "cachedContent" in body:
            return GeminiPrepared(body=dict(body), notes=["cachedContent set by the caller: kept"])
        prefix, rest = self.split(body, stable_contents)
        if not prefix.get("contents") and "systemInstruction" not in prefix and "tools" not in prefix:
            return GeminiPrepared(body=dict(body), notes=["no static prefix: implicit caching only"])
        tokens = self._count("\n".join(_texts(prefix)), m)
        minimum = min_cacheable_tokens(m, WireFormat.GEMINI, self.catalog)
        if tokens < minimum:
            note = (
                f"static prefix ~{tokens} tokens is below the {minimum}-token minimum of {m}: implicit only"
            )
            return GeminiPrepared(body=dict(body), notes=[note])
        key = (tenant, self.prefix_key(m, prefix))
        with self._key_lock(key):
            handle, created, refreshed, usage = self._handle_for(key, m, prefix, tags)
        out = {k: v for k, v in body.items() if k not in MOVED_FIELDS and k != "contents"}
        out["cachedContent"] = handle.name
        out["contents"] = rest
        notes = [f"{'created' if created else 'reusing'} {handle.name} ({handle.tokens} tokens)"]
        return GeminiPrepared(
            body=out, handle=handle, created=created, refreshed=refreshed, create_usage=usage, notes=notes
        )

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _handle_for(
        self, key: tuple[str, str], model: str, prefix: dict[str, Any], tags: Iterable[str]
    ) -> tuple[CachedContentHandle, bool, bool, CacheUsage | None]:
        now = self.clock()
        with self._lock:
            handle = self._handles.get(key)
        if handle is not None and handle.alive(now, self.safety_s):
            refreshed = False
            if self.refresh_margin_s is not None and handle.expires_at - now < self.refresh_margin_s:
                self.transport.update_ttl(handle.name, f"{self.ttl_s}s")
                handle.expires_at = now + self.ttl_s
                handle.refreshes += 1
                refreshed = True
            return handle, False, refreshed, None
        if handle is not None:
            self._retire(key, handle)  # expired on the server already; its storage is accounted
        created = self.transport.create({"model": f"models/{model}", **prefix, "ttl": f"{self.ttl_s}s"})
        usage = usage_from_response(WireFormat.GEMINI, created, model=model)
        meta = created.get("usageMetadata")
        tokens = int(meta.get("totalTokenCount", 0)) if isinstance(meta, Mapping) else usage.input_tokens
        handle = CachedContentHandle(
            name=str(created["name"]),
            model=model,
            tenant=key[0],
            prefix_key=key[1],
            tokens=tokens,
            created_at=now,
            expires_at=now + self.ttl_s,
            tags=frozenset(tags),
        )
        with self._lock:
            self._handles[key] = handle
        return handle, True, False, usage

    def _retire(self, key: tuple[str, str], handle: CachedContentHandle) -> None:
        with self._lock:
            if self._handles.get(key) is handle:
                del self._handles[key]
            self._retired.append(handle)

    # -- invalidation and accounting -------------------------------------------------------

    def invalidate(
        self, *, tenant: str | None = None, prefix_key: str | None = None, tag: str | None = None
    ) -> list[str]:
        """Delete the caches matching every filter given (all of them with no filter).

        Returns the names deleted. A failed DELETE (already expired: 404/403) still drops the
        handle, since a cache the server no longer has must not be referenced again.
        """
        now = self.clock()
        with self._lock:
            matching = [
                (k, h)
                for k, h in self._handles.items()
                if (tenant is None or h.tenant == tenant)
                and (prefix_key is None or h.prefix_key == prefix_key)
                and (tag is None or tag in h.tags)
            ]
        names = []
        for k, h in matching:
            try:
                self.transport.delete(h.name)
            except Exception as exc:
                log.warning(
                    "deleting Gemini cache %s failed (%s); dropping the handle", h.name, type(exc).__name__
                )
            h.deleted_at = now
            self._retire(k, h)
            names.append(h.name)
        return names

    def handles(self) -> list[CachedContentHandle]:
        """The live handles (possibly past expiry, until the next use or invalidation)."""
        with self._lock:
            return list(self._handles.values())

    def storage_cost(self, now: float | None = None) -> float:
        """Storage cost so far of every cache this manager created, deleted ones included."""
        t = self.clock() if now is None else now
        with self._lock:
            every = [*self._handles.values(), *self._retired]
        return sum(h.storage_cost(t, catalog=self.catalog) for h in every)
