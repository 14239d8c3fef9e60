"""streamgd's version: the one place it is written (``pyproject.toml`` reads it), stored in model files and caches."""

__version__ = "0.1.0"
