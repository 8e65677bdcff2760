"""Shared pytest fixtures: the local emulators live in their own modules.
Pipelines built straight from transforms/ get the jobs' construction
speed-up too (transforms.beam_speedups)."""

from transforms import beam_speedups  # noqa: F401  (installs itself on import)

pytest_plugins = ["tests.datastore_emulator", "tests.bigquery_emulator"]
