"""campaigns: a permission-first marketing automation scheduler."""

__version__ = "0.1.0"
