"""The config document, pure: schema, parsing, rules, advice, architecture, estimate, presets.

Nothing here imports Flask, SQLAlchemy or torch at import time (an import-linter contract checks
it): the service, the web form and the worker all read the document through this package.
"""
