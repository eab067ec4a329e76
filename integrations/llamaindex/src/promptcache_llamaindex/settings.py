"""``enable(cache)``: promptcache for everything configured through LlamaIndex ``Settings``.

``enable`` wraps ``Settings.llm`` in :class:`~promptcache_llamaindex.CachingLLM` (whose private
copy of the LLM sends through the core's HTTP seam) and registers a
:class:`~promptcache_llamaindex.PromptCacheEventHandler` on the root instrumentation dispatcher.
LLMs assigned *later* (``Settings.llm = Anthropic(...)``) and LlamaIndex's lazily resolved default
LLM are wrapped as well. The ``Settings`` object itself is never touched beyond its own ``llm``
setting: its class stays ``_Settings``. What wraps later LLMs is the ``llm`` property of the
settings class, installed once by the first ``enable`` and put back by the last ``disable``; for
a settings object that is not enabled it is the original property, unchanged. Components given
an explicit ``llm=`` bypass ``Settings``: wrap those with ``CachingLLM`` yourself (their calls are
still observed by the handler, but their requests are not rewritten).

``enable`` is idempotent (a second call with the same cache returns the same handler; with
another cache it re-enables with that one) and ``disable`` restores the original LLM and
handler list.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from llama_index.core import Settings
from llama_index.core.llms import LLM
from llama_index.core.settings import _Settings
from llama_index_instrumentation import get_dispatcher

from promptcache import PromptCache
from promptcache.providers.gemini_cache import GenAIClientTransport
from promptcache.transport import is_genai_client
from promptcache_llamaindex._tenant import DEFAULT_TENANT_KEY
from promptcache_llamaindex.handler import PromptCacheEventHandler
from promptcache_llamaindex.llm import CachingLLM

__all__ = ["disable", "enable", "enabled_handler"]


@dataclass
class _Enabled:
    cache: PromptCache
    handler: PromptCacheEventHandler
    original_llm: LLM | None
    tenant: str | None
    tenant_key: str
    gemini_cache_ttl_s: int | None = None


_state: dict[int, _Enabled] = {}
# The enabled settings objects themselves (kept alive while enabled, so an id is never reused).
_objects: dict[int, Any] = {}


def _live_settings() -> list[Any]:
    return list(_objects.values())


_lock = threading.Lock()
# The settings classes whose ``llm`` property is ours: class -> the original property.
_installed: dict[type, property] = {}


def _wrap(settings: Any, llm: LLM | None) -> LLM | None:
    st = _state.get(id(settings))
    if st is None or llm is None or (isinstance(llm, CachingLLM) and llm.cache is st.cache):
        return llm
    caches = None
    if st.gemini_cache_ttl_s is not None and is_genai_client(getattr(llm, "_client", None)):
        # Explicit cached contents through the LLM's own client (its credentials, its project).
        transport = GenAIClientTransport(llm._client)  # type: ignore[attr-defined]
        caches = st.cache.gemini_caches(transport, ttl_s=st.gemini_cache_ttl_s)
    return CachingLLM(llm, st.cache, tenant=st.tenant, tenant_key=st.tenant_key, gemini_caches=caches)


def _install(cls: type) -> None:
    """Give ``cls`` an ``llm`` property that wraps for enabled instances (once per class)."""
    if cls in _installed:
        return
    prop: property = cls.llm  # type: ignore[attr-defined]
    fget, fset = prop.fget, prop.fset
    assert fget is not None and fset is not None

    def get_llm(self: Any) -> LLM:
        llm = fget(self)
        if id(self) not in _state:
            return llm  # type: ignore[no-any-return]
        wrapped = _wrap(self, llm)
        if wrapped is not llm:
            self._llm = wrapped
        return wrapped  # type: ignore[return-value]

    def set_llm(self: Any, value: Any) -> None:
        fset(self, value)
        if id(self) in _state:
            self._llm = _wrap(self, self._llm)

    _installed[cls] = prop
    # Why on the class and not on the object: Python looks properties up on the type only.
    # The settings object keeps its class; an instance that is not enabled sees no difference.
    cls.llm = property(get_llm, set_llm, doc=prop.__doc__)  # type: ignore[attr-defined]


def _uninstall_unused() -> None:
    in_use = {type(s) for s in _live_settings()}
    for cls in [c for c in _installed if c not in in_use]:
        cls.llm = _installed.pop(cls)  # type: ignore[attr-defined]


def enabled_handler(settings: Any = Settings) -> PromptCacheEventHandler | None:
    """The handler ``enable`` registered for ``settings`` (None when not enabled)."""
    st = _state.get(id(settings))
    return st.handler if st else None


def enable(
    cache: PromptCache,
    settings: Any = Settings,
    *,
    tenant: str | None = None,
    tenant_key: str = DEFAULT_TENANT_KEY,
    gemini_cache_ttl_s: int | None = None,
) -> PromptCacheEventHandler:
    """Apply ``cache`` to every LLM configured through ``settings``; returns the event handler.

    ``tenant`` is used when no instrumentation tag ``tenant_key`` names one.
    ``gemini_cache_ttl_s`` moves the static prefix of a ``GoogleGenAI`` LLM's requests into
    an explicit Gemini cached content kept that long (created with the LLM's own client);
    without it, Gemini's implicit prefix caching applies.
    """
    with _lock:
        st = _state.get(id(settings))
        if st is not None:
            if (
                st.cache is cache
                and st.tenant == tenant
                and st.tenant_key == tenant_key
                and st.gemini_cache_ttl_s == gemini_cache_ttl_s
            ):
                return st.handler
            _disable_locked(settings)
        handler = PromptCacheEventHandler(cache, tenant_key=tenant_key)
        original_llm: LLM | None = getattr(settings, "_llm", None)
        _state[id(settings)] = _Enabled(cache, handler, original_llm, tenant, tenant_key, gemini_cache_ttl_s)
        _objects[id(settings)] = settings
        if isinstance(settings, _Settings) or isinstance(getattr(type(settings), "llm", None), property):
            _install(type(settings))
        if original_llm is not None:
            settings._llm = _wrap(settings, original_llm)
        get_dispatcher().add_event_handler(handler)
        return handler


def _disable_locked(settings: Any) -> None:
    st = _state.pop(id(settings), None)
    if st is None:
        return
    current = getattr(settings, "_llm", None)
    if isinstance(current, CachingLLM) and current.cache is st.cache:
        # Give back the LLM the user set (the original, or one assigned since enable()).
        settings._llm = current.inner
    _objects.pop(id(settings), None)
    _uninstall_unused()
    root = get_dispatcher()
    root.event_handlers = [h for h in root.event_handlers if h is not st.handler]


def disable(settings: Any = Settings) -> None:
    """Undo :func:`enable` for ``settings`` (a no-op when it is not enabled)."""
    with _lock:
        _disable_locked(settings)
