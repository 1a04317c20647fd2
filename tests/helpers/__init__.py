"""Helpers shared by test modules (no test module imports another: shared code lives here or in conftest.py)."""
