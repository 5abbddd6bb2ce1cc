"""The version of the emit package."""

__version__ = "0.1.0"
