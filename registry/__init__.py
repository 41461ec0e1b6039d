"""config-registry: a typed, hash-versioned registry of transformer configs and their runs."""

__version__ = "0.1.0"
