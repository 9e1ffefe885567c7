"""Importable helpers for tests (functions workers must be able to import by name)."""
