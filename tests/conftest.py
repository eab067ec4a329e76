"""Root test configuration: registers the shared real redis-server fixtures (``tests/redis_fixtures.py``)."""

pytest_plugins = ["redis_fixtures"]
