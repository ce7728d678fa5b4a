"""The installed vlaeval's version, in a leaf module so any layer can record it without importing
the top-level API (which imports the runner)."""

__version__ = "0.1.0"
