"""Model settings and their defaults, apart from the maths that uses them: no
numpy or scipy here, so an entry point's --help (pipelines.arguments) shows
the defaults without loading either."""

import dataclasses

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
    max_iterations: int = 500
    seed: int = 0
    num_random_features: int = DEFAULT_NUM_RANDOM_FEATURES
    model_version: str = ""
    trained_at: str = ""
