"""Root test configuration: registers the shared real redis-server fixtures (``tests/redis_fixtures.py``)."""

import os

import pytest
from hypothesis import settings

from promptcache.providers.fallback import REJECTIONS

pytest_plugins = ["redis_fixtures"]

# No per-example deadline: hypothesis's default (200 ms) is a wall-clock limit, and these
# machines are shared and noisy (a loaded run failed a prefilter property on time, not on a value).
settings.register_profile("promptcache", deadline=None)
settings.load_profile("promptcache")

# One deployment key for the test process and every process it starts (they share stores, so
# they must label tenants alike; promptcache.pseudonym). Set before any label is made.
os.environ.setdefault("PROMPTCACHE_TENANT_KEY", "promptcache-tests-deployment-key")


@pytest.fixture(autouse=True)
def _no_remembered_hint_rejections() -> None:
    """Each test starts with no endpoint remembered as refusing caching hints (process state)."""
    REJECTIONS.clear()
