"""Model settings and their defaults, apart from the maths that uses them: no
numpy or scipy here, so an entry point's --help (pipelines.arguments) shows
the defaults without loading either."""

import dataclasses
from typing import Tuple

# Dimension D of the random-component vector r (models.knowledge_state).
DEFAULT_NUM_RANDOM_FEATURES = 100
# The losses models.boosting minimises.
LOSSES = ("logistic", "exponential")


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Per-exercise training (models.exercise_model.fit_exercise)."""
    max_samples: int = 50000
    min_samples: int = 30
    holdout_fraction: float = 0.1
    l2: float = 30.0
    # Several L2 penalties fitted in the same pass (l2 is then not used); the
    # pipeline keeps the one with the best holdout log likelihood (select_l2).
    l2_candidates: Tuple[float, ...] = ()
    max_iterations: int = 500
    seed: int = 0
    num_random_features: int = DEFAULT_NUM_RANDOM_FEATURES
    # Shrink every exercise's theta toward one global fit instead of toward
    # zero (models.exercise_model.fit_global); the global fit pools the first
    # global_rows_per_exercise training rows of each exercise's sample, at
    # most global_max_rows in all, with penalty l2.
    shrink_to_global: bool = False
    global_rows_per_exercise: int = 1000
    global_max_rows: int = 100000
    model_version: str = ""
    trained_at: str = ""
