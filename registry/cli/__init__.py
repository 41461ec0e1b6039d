"""The ``registry`` command: one ``main`` (``main.py``), commands grouped by area, the dev stack."""
