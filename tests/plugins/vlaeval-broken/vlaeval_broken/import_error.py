"""A plugin module that raises while it is imported (a missing dependency looks the same)."""

raise RuntimeError("boom")
