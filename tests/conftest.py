"""Shared pytest fixtures: the local emulators live in their own modules."""

pytest_plugins = ["tests.datastore_emulator", "tests.bigquery_emulator"]
