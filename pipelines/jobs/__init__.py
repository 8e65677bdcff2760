"""The Beam jobs of the entry points pipelines.train_knowledge_model,
pipelines.train_boosted and pipelines.monitor: options classes, graph and
run(). Imported only to run a job, so --help needs no Beam."""

from transforms import beam_speedups  # noqa: F401  (installs itself)
