"""``recorder_for``: one recorder per cache, whatever the order of calls, living as long as its cache."""

from __future__ import annotations

import gc
import weakref

from promptcache import PromptCache
from promptcache.stats import recorder_for
from promptcache.usage import CacheUsage


def test_each_cache_keeps_its_own_recorder_whatever_the_order_of_calls() -> None:
    a, b = PromptCache(), PromptCache()
    ra, rb = recorder_for(a), recorder_for(b)
    assert ra is not rb
    for cache, rec in ((a, ra), (a, ra), (b, rb), (a, ra), (b, rb), (b, rb)):
        assert recorder_for(cache) is rec
    recorder_for(a).record("t", CacheUsage(provider="openai", model="gpt-4o", input_tokens=10))
    assert ra.snapshot().total.calls == 1
    assert rb.snapshot().total.calls == 0


def test_a_recorder_lives_as_long_as_its_cache_even_when_asked_for_last() -> None:
    cache = PromptCache()
    rec = weakref.ref(recorder_for(cache))
    assert recorder_for(cache) is rec()
    del cache
    gc.collect()
    assert rec() is None
    fresh = PromptCache()  # a new cache (maybe at the old one's address) gets a new recorder
    assert recorder_for(fresh).snapshot().total.calls == 0
