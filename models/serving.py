"""Serving: P(correct) for a student's next attempt from a trained version.

Features are computed by the same KnowledgeState code the training replay is
tested against (models.knowledge_state), from the student's whole history:
sessionized (sorted, duplicates dropped, problem numbers derived) exactly as
in training. Random components come from the version's saved vectors; a key
the training data never used is derived from the seed, which gives the vector
training would have used.
"""

import json
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from models.knowledge_state import ComponentCache, KnowledgeState, feature_names, sessionize
from models.log_batch import LogBatch, sessionize_batch
from models.problem_log import ProblemLog
from models.student_state import StudentStates, knowledge_state


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


class KnowledgeModel:
    """Per-exercise theta plus the components, for one model version."""

    def __init__(self, params: Dict[str, np.ndarray], components: ComponentCache,
                 model_version: str = "", student_features: bool = False):
        self.params = params
        self.components = components
        self.model_version = model_version
        # A version trained with --student_features: x also holds
        # models.student_features' columns (recorded with the version).
        self.student_features = student_features

    @classmethod
    def from_records(cls, params_records: Iterable[dict], component_records: Iterable[dict],
                     seed: int, num_random_features: int, model_version: str = "",
                     student_features: bool = False):
        components = ComponentCache(seed, num_random_features)
        for record in component_records:
            key = (record["exercise"], record["problem_type"], bool(record["correct"]))
            components.vectors[key] = np.asarray(record["vector"], dtype=float)
        params = {record["exercise"]: np.asarray(record["theta"], dtype=float)
                  for record in params_records}
        expected = len(feature_names(num_random_features, student_features))
        wrong = [name for name, theta in params.items() if theta.shape != (expected,)]
        if wrong:
            raise ValueError(f"theta of {wrong[0]!r} does not have {expected} values")
        return cls(params, components, model_version, student_features)

    def state(self, history: Iterable[ProblemLog],
              saved: Optional[StudentStates] = None) -> KnowledgeState:
        """The student's KnowledgeState after every attempt in `history`, or,
        given `saved` (the student's rows of a snapshot a training run wrote
        with --state_output: StudentStates.of_user), after the saved state and
        then the attempts of `history` it does not hold, sessionized as the
        training run that continues from it would."""
        if saved is None:
            state = KnowledgeState(self.components, self.student_features)
            logs = sessionize(history)[0]
        else:
            state = knowledge_state(saved, self.components, self.student_features)
            logs = sessionize_batch(LogBatch.from_logs(list(history)), prior=saved).logs.logs()
        for log in logs:
            state.update(log)
        return state

    def predict(self, history: Iterable[ProblemLog], exercise: str,
                saved: Optional[StudentStates] = None) -> Optional[float]:
        """P(correct) on `exercise` after `history` (and `saved`, see state());
        None for an exercise the version has no parameters for."""
        theta = self.params.get(exercise)
        if theta is None:
            return None
        return _sigmoid(theta @ self.state(history, saved).features(exercise))

    def predict_each(self, history: Iterable[ProblemLog]
                     ) -> List[Tuple[ProblemLog, Optional[float]]]:
        """For every attempt in the sessionized history, the prediction made
        just before it: what serving would have said at that moment."""
        state = KnowledgeState(self.components, self.student_features)
        predictions = []
        for log in sessionize(history)[0]:
            theta = self.params.get(log.exercise)
            predictions.append((log, None if theta is None
                                else _sigmoid(theta @ state.features(log.exercise))))
            state.update(log)
        return predictions


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def load_local(output_dir: str, read_text=_read_text) -> KnowledgeModel:
    """The model a train_knowledge_model run wrote under `output_dir`.
    `read_text(path)`: how to read a file (e.g. through Beam's FileSystems
    for gs:// paths)."""
    def json_lines(*parts):
        text = read_text(os.path.join(output_dir, *parts))
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    settings = json.loads(read_text(os.path.join(output_dir, "run_summary.json")))["model"]
    return KnowledgeModel.from_records(
        json_lines("params", "params.jsonl"), json_lines("components", "components.jsonl"),
        settings["seed"], settings["num_random_features"], settings["model_version"],
        bool(settings.get("student_features")))


def load_version(registry, version: Optional[str] = None) -> KnowledgeModel:
    """A version from a models.param_store.Registry: the active one by default."""
    from models.param_store import ModelNotFound
    version = version or registry.active_version()
    if not version:
        raise ModelNotFound("no model version is active")
    header, params, components = registry.load(version)
    return KnowledgeModel.from_records(params, components, header["seed"],
                                       header["num_random_features"], version,
                                       bool(header.get("student_features")))


def load_active(project: str, namespace: Optional[str] = None) -> KnowledgeModel:
    from models.param_store import Registry
    return load_version(Registry(project, namespace))
