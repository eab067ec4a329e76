"""Provider adapter tests: usage read back from real recorded traffic."""
