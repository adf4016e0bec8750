"""The release, in a leaf of its own: the store tags every run with it, and importing it costs nothing."""

__version__ = "0.2.0"
