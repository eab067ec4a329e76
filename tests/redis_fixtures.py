"""The real redis-server fixtures, shared with every test package (registered by ``tests/conftest.py``).

They live in ``tests/tiers/conftest.py`` (where the tier tests grew them); this
module re-exports them so that other packages (``tests/artifacts``, the
integrations) start the same servers instead of copying the code. Only
explicit fixtures are re-exported: the tiers' autouse fixture stays in tiers.
"""

from __future__ import annotations

from tiers.conftest import (
    SKIP_REASON,
    FakeClock,
    RedisCluster,
    RedisFactory,
    RedisServer,
    clock,
    key_for,
    ns,
    redis_cluster,
    redis_factory,
    redis_root,
    redis_sentinel,
    redis_server,
    start_redis,
    wait_until,
)

__all__ = [
    "SKIP_REASON",
    "FakeClock",
    "RedisCluster",
    "RedisFactory",
    "RedisServer",
    "clock",
    "key_for",
    "ns",
    "redis_cluster",
    "redis_factory",
    "redis_root",
    "redis_sentinel",
    "redis_server",
    "start_redis",
    "wait_until",
]
