"""The behaviours: each takes a SQLAlchemy session first and only flushes; callers commit."""
