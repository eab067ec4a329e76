"""Root test configuration: registers the shared real redis-server fixtures (``tests/redis_fixtures.py``)."""

import pytest

from promptcache.providers.fallback import REJECTIONS

pytest_plugins = ["redis_fixtures"]


@pytest.fixture(autouse=True)
def _no_remembered_hint_rejections() -> None:
    """Each test starts with no endpoint remembered as refusing caching hints (process state)."""
    REJECTIONS.clear()
