"""Helpers shared by test modules (import as ``helpers.<module>``; tests/ is on sys.path)."""
