"""The async-first sources of the artifact caches; ``../_sync`` is generated from them (gen_sync.py)."""
