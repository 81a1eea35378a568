"""The package version (kept in step with pyproject.toml by tests/test_packaging.py)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
