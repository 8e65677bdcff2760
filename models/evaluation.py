"""Comparing a newly trained version with baselines on the same holdout rows,
and deciding whether it may be activated.

Every fitted exercise's record carries its holdout mean log likelihood, the
base rate's on the same rows and, when a baseline version was given, the
baseline theta's on the same rows (fit_exercise). Overall figures are means
over holdout rows (weighted by num_holdout), so large exercises count for what
they are.
"""

from typing import Iterable, Optional, Sequence, Tuple

DEPLOY_POLICIES = ("always", "if_better")
BASELINE_FIELD = "holdout_baseline_log_likelihood"
# With --l2_candidates: an exercise's holdout log likelihood per candidate.
HOLDOUT_BY_L2 = "holdout_log_likelihood_by_l2"


def weighted_mean(pairs) -> Optional[float]:
    """Mean of the values weighted by their counts, over (count, value) pairs;
    pairs without a value or a positive count are left out (None if none remain)."""
    pairs = [(weight, value) for weight, value in pairs if weight > 0 and value is not None]
    total = sum(weight for weight, _ in pairs)
    return sum(weight * value for weight, value in pairs) / total if total else None


def evaluate(records: Iterable[dict], baseline_version: Optional[str] = None,
             baseline_exercises: int = 0, baseline_note: str = "") -> dict:
    """Summary of the new version against the base rate and the baseline."""
    records = sorted(records, key=lambda record: record["exercise"])  # same sums every run
    holdout = [(r["num_holdout"], r) for r in records]
    compared = [(n, r) for n, r in holdout if r.get(BASELINE_FIELD) is not None]
    evaluation = {
        "holdout_rows": sum(n for n, _ in holdout),
        "holdout_log_likelihood": weighted_mean(
            (n, r["holdout_log_likelihood"]) for n, r in holdout),
        "base_rate_log_likelihood": weighted_mean(
            (n, r["holdout_base_rate_log_likelihood"]) for n, r in holdout),
        "baseline_version": baseline_version,
    }
    if baseline_version:
        evaluation.update({
            "baseline_note": baseline_note,
            "exercises_compared": len(compared),
            "holdout_rows_compared": sum(n for n, _ in compared),
            "baseline_log_likelihood": weighted_mean(
                (n, r[BASELINE_FIELD]) for n, r in compared),
            "new_log_likelihood_on_compared": weighted_mean(
                (n, r["holdout_log_likelihood"]) for n, r in compared),
            "exercises_only_in_baseline": max(0, baseline_exercises - len(compared)),
        })
    return evaluation


def l2_selection(records: Iterable[dict], candidates: Sequence[float]) -> dict:
    """The candidate L2 penalty with the best holdout log likelihood over
    all exercises (per candidate, the mean over holdout rows: weighted by
    num_holdout, as evaluate() weighs), from records that carry HOLDOUT_BY_L2
    in `candidates` order. Ties go to the earlier candidate; with no holdout
    rows at all, the first candidate is kept."""
    pairs = [(r["num_holdout"], r[HOLDOUT_BY_L2]) for r in records]
    means = [weighted_mean((n, scores[i]) for n, scores in pairs)
             for i in range(len(candidates))]
    scored = [i for i, mean in enumerate(means) if mean is not None]
    best = max(scored, key=lambda i: means[i]) if scored else 0
    return {"candidates": list(candidates), "holdout_log_likelihood": means,
            "holdout_rows": sum(n for n, _ in pairs), "chosen": candidates[best]}


def deploy_decision(evaluation: dict, policy: str) -> Tuple[bool, str]:
    """(activate?, why) for a policy in DEPLOY_POLICIES."""
    if policy == "always":
        return True, "deploy_policy always"
    if policy != "if_better":
        raise ValueError(f"unknown deploy policy {policy!r}")
    if not evaluation.get("baseline_version"):
        return True, "no active version to compare with"
    new, old = (evaluation.get("new_log_likelihood_on_compared"),
                evaluation.get("baseline_log_likelihood"))
    if new is None or old is None:
        return False, (f"cannot compare with active version "
                       f"{evaluation['baseline_version']!r} "
                       f"({evaluation.get('baseline_note') or 'no holdout rows in common'})")
    verdict = (f"holdout log likelihood {new:.5f} vs {old:.5f} for active version "
               f"{evaluation['baseline_version']!r} on the same "
               f"{evaluation['holdout_rows_compared']} rows")
    if new >= old:
        return True, f"better: {verdict}"
    return False, f"worse: {verdict}"
