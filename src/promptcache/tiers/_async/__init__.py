"""The async-first sources of the tier code; ``../_sync`` is generated from them (scripts/gen_sync.py)."""
