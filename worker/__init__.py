"""The registry worker daemon: claims queued runs, trains or evaluates, reports back."""
