"""The Datastore layout's pure parts: keys, entity properties and commit batches."""

import json
import math

import pytest

from models import param_store


def test_component_names_cannot_collide():
    # With a plain separator these two keys would read the same.
    first = param_store.component_name("a|b", "c", True)
    second = param_store.component_name("a", "b|c", True)
    assert first != second
    assert json.loads(first) == ["a|b", "c", True]


def test_params_are_children_of_their_version():
    assert param_store.params_path("v1", "ex") == (
        "KnowledgeModelVersion", "v1", "ExerciseParams", "ex")


def test_params_entity_keeps_theta_and_blanks_non_finite_metrics():
    record = {"exercise": "ex", "theta": [0.5, -1.0], "holdout_auc": float("nan"),
              "num_train": 10}
    path, properties = param_store.params_entity("v1", "run", record)
    assert path[-1] == "ex"
    assert properties == {"exercise": "ex", "theta": [0.5, -1.0], "holdout_auc": None,
                          "num_train": 10, "run_id": "run"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_theta_is_refused(bad):
    record = {"exercise": "ex", "theta": [0.5, bad]}
    assert not param_store.is_finite_params(record)
    with pytest.raises(ValueError, match="non-finite"):
        param_store.params_entity("v1", "run", record)


def test_overlong_key_names_are_refused():
    with pytest.raises(ValueError, match="1500 bytes"):
        param_store.params_path("v1", "x" * 1501)


def _entities(count, width=1):
    return [(("Kind", f"k{i}"), {"vector": [0.1] * width}) for i in range(count)]


def test_batches_respect_the_mutation_limit_and_keep_everything():
    batches = list(param_store.batches(_entities(1201)))
    assert [len(batch) for batch in batches] == [500, 500, 201]
    assert [path for batch in batches for path, _ in batch] == [
        path for path, _ in _entities(1201)]


def test_batches_respect_the_byte_limit():
    entities = _entities(40, width=30000)  # ~330 kB each
    batches = list(param_store.batches(entities, max_bytes=1_000_000))
    assert all(sum(param_store.estimated_bytes(*entity) for entity in batch) <= 1_000_000
               for batch in batches)
    assert sum(len(batch) for batch in batches) == 40


def test_a_repeated_key_in_one_batch_keeps_its_last_value():
    entities = [(("Kind", "a"), {"value": 1}), (("Kind", "b"), {"value": 2}),
                (("Kind", "a"), {"value": 3})]
    (batch,) = param_store.batches(entities)
    assert dict(batch) == {("Kind", "a"): {"value": 3}, ("Kind", "b"): {"value": 2}}


def test_an_entity_over_one_mib_is_refused_with_its_key():
    with pytest.raises(ValueError, match="1 MiB"):
        list(param_store.batches(_entities(1, width=200000)))


def test_estimated_bytes_is_an_upper_bound_of_the_encoded_entity():
    from google.cloud import datastore
    from google.cloud.datastore.helpers import entity_to_protobuf
    properties = {"exercise": "fractions_1", "theta": [math.pi] * 107, "num_train": 123,
                  "holdout_auc": None, "converged": True}
    entity = datastore.Entity(datastore.Key("KnowledgeModelVersion", "v1", "ExerciseParams",
                                            "fractions_1", project="p"))
    entity.update(properties)
    encoded = entity_to_protobuf(entity)._pb.ByteSize()
    estimate = param_store.estimated_bytes(param_store.params_path("v1", "fractions_1"),
                                           properties)
    assert encoded <= estimate <= 2 * encoded
