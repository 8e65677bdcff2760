"""Writing a model version to Datastore, and activating it only once complete.

Beam's WriteToDatastore is not used: it emits nothing per write (the
activation gate needs to count what was committed), and its fixed retry
schedule (5 retries from 5 s) cannot be shortened. Here every commit is an
idempotent upsert of at most 500 entities and ~9 MB with unique keys, retried
on transient errors by google.api_core.retry.Retry (exponential backoff with
jitter, the retry helper the Google clients and models.param_store use), at
most --datastore_write_attempts times; the number of
entities committed flows on as data, and the gate compares it with the number
the version must have before it writes the version entity and moves the
active pointer. A run that fails anywhere before that leaves the previously
active version in place.
"""

import json
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from models import param_store
from models.evaluation import deploy_decision, evaluate
from transforms.read import METRICS_NAMESPACE

_LOG = logging.getLogger(__name__)


class DatastoreWriteError(RuntimeError):
    """A commit still failed after every retry."""


def _is_transient(error: Exception) -> bool:
    from google.api_core import exceptions
    transient = (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                 exceptions.InternalServerError, exceptions.TooManyRequests,
                 exceptions.Aborted, exceptions.RetryError, ConnectionError, TimeoutError)
    return isinstance(error, transient)


class RetrySettings:
    """Attempts per commit and the first backoff; the backoff grows by
    `multiplier` up to `max_backoff_seconds`, each sleep drawn uniformly
    below it (google.api_core.retry's exponential_sleep_generator)."""

    def __init__(self, attempts: int = 8, initial_backoff_seconds: float = 1.0,
                 max_backoff_seconds: float = 60.0, multiplier: float = 2.0):
        self.attempts = attempts
        self.initial_backoff_seconds = initial_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.multiplier = multiplier

    def policy(self, on_error):
        """A Retry of transient errors with this backoff and no time limit.
        Retry has no attempt limit (googleapis/python-api-core#535): it calls
        on_error(error) after each transient failure, which must raise once
        `attempts` calls have failed."""
        from google.api_core.retry import Retry
        return Retry(predicate=_is_transient, initial=self.initial_backoff_seconds,
                     maximum=self.max_backoff_seconds, multiplier=self.multiplier,
                     timeout=None, on_error=on_error)


class _CommitBatches(beam.DoFn):
    """A batch of (key path, properties) -> commits; emits the number of
    entities each successful commit wrote."""

    def __init__(self, project: str, namespace: str, retry: RetrySettings):
        self.project, self.namespace, self.retry = project, namespace, retry
        self.written = Metrics.counter(METRICS_NAMESPACE, "datastore_entities_written")
        self.retried = Metrics.counter(METRICS_NAMESPACE, "datastore_commit_retries")

    def setup(self):
        self.registry = param_store.Registry(self.project, self.namespace)

    def process(self, entities):
        for commit in param_store.batches(entities):
            self._commit(commit)
            self.written.inc(len(commit))
            yield len(commit)

    def _commit(self, entities):
        failures = []

        def on_error(error):
            failures.append(error)
            if len(failures) >= self.retry.attempts:
                raise self._failed(entities, error, len(failures)) from error
            self.retried.inc()
            _LOG.warning("Datastore commit failed (%s); retry %d", error, len(failures))

        try:
            self.retry.policy(on_error)(self.registry.put_entities)(entities)
        except DatastoreWriteError:
            raise
        except Exception as error:
            raise self._failed(entities, error, len(failures) + 1) from error

    def _failed(self, entities, error, attempts):
        """Not transient, or still failing after the last attempt."""
        return DatastoreWriteError(
            f"Datastore commit of {len(entities)} entities to project {self.project!r} "
            f"failed after {attempts} attempt(s): {type(error).__name__}: {error}")


class _CompleteVersion(beam.DoFn):
    """Runs once, after every entity is committed (its side inputs are only
    ready then): checks the counts, writes the version entity with its
    evaluation, then activates it if the deploy policy allows."""

    def __init__(self, project, namespace, version, header, deploy_policy, baseline):
        self.project, self.namespace = project, namespace
        self.version, self.header = version, header
        self.deploy_policy, self.baseline = deploy_policy, baseline

    def process(self, _, written, params, num_components):
        non_finite = [r["exercise"] for r in params if not param_store.is_finite_params(r)]
        if non_finite:
            raise DatastoreWriteError(
                f"{len(non_finite)} exercises (e.g. {non_finite[0]!r}) have non-finite "
                f"parameters; model version {self.version!r} was not completed or activated")
        if written != len(params) + num_components:
            raise DatastoreWriteError(
                f"committed {written} entities for model version {self.version!r}, expected "
                f"{len(params)} parameters + {num_components} components; not activated")
        evaluation = evaluate(params, **self.baseline)
        activate, reason = deploy_decision(evaluation, self.deploy_policy)
        registry = param_store.Registry(self.project, self.namespace)
        registry.complete_version(self.version, {
            **self.header, "num_exercises": len(params), "num_components": num_components,
            "evaluation": json.dumps(evaluation, sort_keys=True),
            "deploy_decision": reason})
        pointer = registry.activate(self.version) if activate else registry.active()
        yield {"model_version": self.version, "num_exercises": len(params),
               "num_components": num_components, "activated": activate,
               "deploy_decision": reason, "evaluation": evaluation,
               "active_version": pointer["version"] if pointer else None}


class WriteModelVersion(beam.PTransform):
    """{'params': parameter records, 'components': component records} ->
    one record describing the completed version: its evaluation, whether it
    was activated and why, and the active version after it.

    `header` holds the version's settings (run_id, seed, dimension, ...);
    `baseline` the keyword arguments of models.evaluation.evaluate besides the
    records (the active version the records were scored against)."""

    def __init__(self, project: str, namespace: str, version: str, header: dict,
                 deploy_policy: str = "always", baseline: dict = None,
                 retry: RetrySettings = None, max_batch_size: int = 500):
        super().__init__()
        self.project, self.namespace, self.version = project, namespace, version
        self.header, self.deploy_policy = header, deploy_policy
        self.baseline = baseline or {}
        self.retry = retry or RetrySettings()
        self.max_batch_size = max_batch_size

    def expand(self, records):
        version, run_id = self.version, self.header["run_id"]
        params, components = records["params"], records["components"]
        entities = (
            (params | "FiniteParams" >> beam.Filter(param_store.is_finite_params)
             | "ParamsEntities" >> beam.Map(
                lambda r: param_store.params_entity(version, run_id, r)),
             components | "ComponentEntities" >> beam.Map(
                 lambda r: param_store.component_entity(version, run_id, r)))
            | "AllEntities" >> beam.Flatten())
        written = (entities
                   | "Batch" >> beam.BatchElements(max_batch_size=self.max_batch_size)
                   | "Commit" >> beam.ParDo(_CommitBatches(self.project, self.namespace,
                                                           self.retry))
                   | "CountWritten" >> beam.CombineGlobally(sum))
        return (params.pipeline
                | "Once" >> beam.Create([None])
                | "CompleteVersion" >> beam.ParDo(
                    _CompleteVersion(self.project, self.namespace, version, self.header,
                                     self.deploy_policy, self.baseline),
                    beam.pvalue.AsSingleton(written),
                    beam.pvalue.AsList(params),
                    beam.pvalue.AsSingleton(
                        components | "CountComponents" >> beam.combiners.Count.Globally())))
