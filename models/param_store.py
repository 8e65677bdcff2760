"""Versioned knowledge-model parameters in Datastore: the entity layout and
the registry operations that training, serving and operators share.

Layout, in one namespace:

    KnowledgeModelVersion/<version>                       written last: settings and counts
      ExerciseParams/<exercise>                           one per fitted exercise
      RandomComponent/<["exercise","problem_type",correct]>   one per component used
    KnowledgeModelActive/active                           the pointer serving follows

Parameters and components are children of their version, so loading a version
is a strongly consistent ancestor query and needs no custom index. The version
entity itself is written only after every child is, so a version that `list`
shows is complete; every child carries the writing run's `run_id`, and a
loader keeps only the children of the run the version entity names, so a
re-run of a version that fitted fewer exercises leaves no stale ones behind.
The pointer moves in a transaction that keeps the history rollback needs.

This module talks to Datastore through google-cloud-datastore only (no Beam),
so serving code can use it without the pipeline.
"""

import datetime
import json
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

VERSION_KIND = "KnowledgeModelVersion"
PARAMS_KIND = "ExerciseParams"
COMPONENT_KIND = "RandomComponent"
ACTIVE_KIND, ACTIVE_NAME = "KnowledgeModelActive", "active"
HISTORY_LENGTH = 50
# Datastore limits: key names up to 1,500 bytes, entities up to 1 MiB,
# commits up to 500 mutations and 10 MiB.
MAX_KEY_NAME_BYTES = 1500
MAX_ENTITY_BYTES = 1_000_000
# Long values (vectors, names lists) are kept out of the indexes: they are
# never queried and each list element would otherwise cost an index entry.
UNINDEXED = ("theta", "vector", "feature_names", "history", "evaluation", "deploy_decision")

KeyPath = Tuple[str, ...]


class ModelNotFound(LookupError):
    """No such (complete) model version, or no active version."""


def _key_name(name: str) -> str:
    if len(name.encode("utf-8")) > MAX_KEY_NAME_BYTES:
        raise ValueError(f"Datastore key name longer than {MAX_KEY_NAME_BYTES} bytes: "
                         f"{name[:80]!r}...")
    return name


def version_path(version: str) -> KeyPath:
    return (VERSION_KIND, _key_name(version))


def params_path(version: str, exercise: str) -> KeyPath:
    return version_path(version) + (PARAMS_KIND, _key_name(exercise))


def component_name(exercise: str, problem_type: str, correct: bool) -> str:
    """JSON, so no exercise or problem type can collide with another key."""
    return json.dumps([exercise, problem_type, bool(correct)], ensure_ascii=False)


def component_path(version: str, record: dict) -> KeyPath:
    return version_path(version) + (COMPONENT_KIND, _key_name(component_name(
        record["exercise"], record["problem_type"], record["correct"])))


def is_finite_params(record: dict) -> bool:
    return all(math.isfinite(value) for value in record["theta"])


def params_entity(version: str, run_id: str, record: dict) -> Tuple[KeyPath, dict]:
    """(key path, properties) of one fitted exercise; NaN metrics become None
    (Datastore would store them, serving dashboards would choke on them)."""
    if not is_finite_params(record):
        raise ValueError(f"non-finite theta for exercise {record['exercise']!r}")
    properties = {key: (None if isinstance(value, float) and not math.isfinite(value)
                        else value) for key, value in record.items()}
    properties["run_id"] = run_id
    return params_path(version, record["exercise"]), properties


def component_entity(version: str, run_id: str, record: dict) -> Tuple[KeyPath, dict]:
    return component_path(version, record), {**record, "run_id": run_id}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Registry:
    """The model versions of one Datastore project and namespace."""

    def __init__(self, project: str, namespace: Optional[str] = None, client=None):
        if client is None:
            from google.cloud import datastore  # heavy import, only where used
            client = datastore.Client(project=project, namespace=namespace or None)
        self.client = client

    def key(self, path: KeyPath):
        return self.client.key(*path)

    def entity(self, path: KeyPath, properties: dict):
        from google.cloud import datastore
        entity = datastore.Entity(self.key(path), exclude_from_indexes=tuple(
            name for name in UNINDEXED if name in properties))
        entity.update(properties)
        return entity

    # -- reading -------------------------------------------------------------
    def versions(self) -> List[dict]:
        """Every complete version, newest first."""
        query = self.client.query(kind=VERSION_KIND)
        found = [dict(entity) for entity in query.fetch()]
        return sorted(found, key=lambda version: version["written_at"], reverse=True)

    def version(self, version: str) -> dict:
        entity = self.client.get(self.key(version_path(version)))
        if entity is None:
            raise ModelNotFound(f"model version {version!r} does not exist or was not "
                                f"completely written")
        return dict(entity)

    def active(self, deadline: Optional[float] = None) -> Optional[dict]:
        """The pointer: {'version', 'activated_at', 'history'} or None.
        `deadline`: give up retrying after that many seconds (default ~60)."""
        retry = {}
        if deadline is not None:
            from google.api_core.retry import Retry
            retry = {"retry": Retry(timeout=deadline), "timeout": deadline}
        entity = self.client.get(self.key((ACTIVE_KIND, ACTIVE_NAME)), **retry)
        return dict(entity) if entity is not None else None

    def active_version(self, deadline: Optional[float] = None) -> Optional[str]:
        pointer = self.active(deadline)
        return pointer["version"] if pointer else None

    def load(self, version: str) -> Tuple[dict, List[dict], List[dict]]:
        """(version properties, params records, component records) of a
        complete version; raises ModelNotFound if the children do not add up."""
        header = self.version(version)
        parent = self.key(version_path(version))
        loaded = {}
        for kind in (PARAMS_KIND, COMPONENT_KIND):
            records = [dict(entity) for entity in
                       self.client.query(kind=kind, ancestor=parent).fetch()]
            records = [record for record in records if record.pop("run_id") == header["run_id"]]
            loaded[kind] = records
        counts = {PARAMS_KIND: header["num_exercises"], COMPONENT_KIND: header["num_components"]}
        for kind, expected in counts.items():
            if len(loaded[kind]) != expected:
                raise ModelNotFound(f"model version {version!r} should have {expected} "
                                    f"{kind} entities but has {len(loaded[kind])}")
        return header, loaded[PARAMS_KIND], loaded[COMPONENT_KIND]

    # -- writing -------------------------------------------------------------
    def put_entities(self, entities: Sequence[Tuple[KeyPath, dict]]) -> None:
        """One commit (callers keep it within Datastore's batch limits)."""
        self.client.put_multi([self.entity(path, properties) for path, properties in entities])

    def complete_version(self, version: str, properties: dict) -> None:
        """Mark a version complete: call only after all its children are written."""
        self.put_entities([(version_path(version),
                            {**properties, "model_version": version, "written_at": utc_now()})])

    def activate(self, version: str) -> dict:
        """Point serving at a complete version; returns the new pointer."""
        self.version(version)  # raises if missing or incomplete
        with self.client.transaction():
            pointer = self.active() or {"history": []}
            history = list(pointer.get("history") or [])
            if pointer.get("version") and pointer["version"] != version:
                history = (history + [pointer["version"]])[-HISTORY_LENGTH:]
            new = {"version": version, "activated_at": utc_now(), "history": history}
            self.client.put(self.entity((ACTIVE_KIND, ACTIVE_NAME), new))
        return new

    def rollback(self) -> dict:
        """Re-activate the version that was active before the current one."""
        with self.client.transaction():
            pointer = self.active()
            if not pointer or not pointer.get("history"):
                raise ModelNotFound("no earlier active version to roll back to")
            history = list(pointer["history"])
            previous = history.pop()
            self.version(previous)
            new = {"version": previous, "activated_at": utc_now(), "history": history}
            self.client.put(self.entity((ACTIVE_KIND, ACTIVE_NAME), new))
        return new


def batches(entities: Iterable[Tuple[KeyPath, dict]], max_entities: int = 500,
            max_bytes: int = 9_000_000) -> Iterable[List[Tuple[KeyPath, dict]]]:
    """Split entities into commits within Datastore's limits. A key repeated in
    one batch (Datastore rejects that) keeps its last value."""
    batch: Dict[KeyPath, dict] = {}
    size = 0
    for path, properties in entities:
        entity_size = estimated_bytes(path, properties)
        if entity_size > MAX_ENTITY_BYTES:
            raise ValueError(f"entity {path} is about {entity_size} bytes, over Datastore's "
                             f"1 MiB limit")
        if batch and (len(batch) >= max_entities or size + entity_size > max_bytes) \
                and path not in batch:
            yield list(batch.items())
            batch, size = {}, 0
        batch[path] = properties
        size += entity_size
    if batch:
        yield list(batch.items())


def estimated_bytes(path: KeyPath, properties: dict) -> int:
    """An upper-bound estimate of the encoded size (floats 9 bytes, strings
    their UTF-8 length plus framing, property names counted per value)."""
    def size(value) -> int:
        if isinstance(value, (list, tuple)):
            return sum(size(item) + 2 for item in value) + 4
        if isinstance(value, str):
            return len(value.encode("utf-8")) + 4
        return 11
    return sum(len(part.encode("utf-8")) + 4 for part in path) + sum(
        len(name) + 4 + size(value) for name, value in properties.items())
