"""Readers: one module per source format, each yielding plain records for the store."""
