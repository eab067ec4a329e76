"""Provider adapters: caching hints out, usage in."""
