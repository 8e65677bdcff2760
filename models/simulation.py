"""Deterministic synthetic ProblemLogs with a known true P(correct).

Real ProblemLogs cannot be shipped with the project, and a model can only be
judged against the truth, so this simulator produces logs whose structure is
what makes a knowledge model worth having: students differ in ability,
exercises differ in difficulty and build on prerequisites, practice raises
mastery, and activity is spread over sessions on many days. Every attempt also
carries `p_true`, the probability the simulator used, so an evaluation can
compare a model's log likelihood with the best achievable one.

Everything is vectorised with numpy (1-2 s per million attempts on one
core) and is a pure function of the arguments: the same (students, seed,
exercises, days) always gives identical arrays.

The generative story, per student:

* ability ~ N(0, 1) and a personal learning pace;
* an attempt budget, log-normal around MEAN_ATTEMPTS_PER_STUDENT, with a few
  heavy users doing HEAVY_USER_MULTIPLIER times more;
* attempts come in blocks (several problems of one exercise in a row); each
  block's exercise is drawn near a curriculum position that moves from easier
  to harder exercises, weighted by a Zipf-like exercise popularity, with an
  occasional review of something easier;
* logit P(correct) = BASE_LOGIT + ability - difficulty - problem-type offset
  + a per-(student, exercise) deviation + practice mastery on the exercise
  - a penalty for unpractised prerequisites + transfer of the student's
  exercise-specific skill on practised prerequisites;
* blocks are grouped into sessions spread over `days`, starting at START_TIME
  (a student whose attempts alone take longer than `days` runs past it).
"""

import dataclasses
import datetime
from typing import Dict, Tuple

import numpy as np

from models.problem_log import FIELDS

# Benchmarks pick students = target_logs / MEAN_ATTEMPTS_PER_STUDENT, so the
# simulator is calibrated to hit it: the mean over many students is within a
# few percent of this value (heavy users included).
MEAN_ATTEMPTS_PER_STUDENT = 40.0

HEAVY_USER_FRACTION = 0.005
HEAVY_USER_MULTIPLIER = (10.0, 30.0)
# Spread of the log-normal attempt budget of ordinary students.
ATTEMPTS_SIGMA = 0.9
# Mean number of consecutive problems of one exercise (geometric).
MEAN_BLOCK_LENGTH = 5.0
# Probability that a block starts a new session (the first block always does).
NEW_SESSION_PROBABILITY = 0.35
# Probability that a block reviews an easier exercise instead of progressing.
REVIEW_PROBABILITY = 0.15
# Exponent of exercise popularity: weight = rank ** -ZIPF_EXPONENT.
ZIPF_EXPONENT = 1.5
MAX_PREREQUISITES = 3
MAX_PROBLEM_TYPES = 4

# Coefficients of the true logit (see the module docstring).
BASE_LOGIT = 0.4
EXERCISE_DEVIATION_SIGMA = 0.5
MASTERY_GAIN = 1.6
PREREQUISITE_PENALTY = 1.2
PREREQUISITE_TRANSFER = 0.6
PROBLEM_TYPE_SIGMA = 0.3

START_TIME = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
START_TIME_MICROS = 1_767_225_600 * 1_000_000
_DAY_MICROS = 86_400 * 1_000_000

# Column order of SimulatedLogs.columns: the ProblemLog fields, then p_true.
COLUMNS = FIELDS + ("p_true",)


@dataclasses.dataclass(frozen=True)
class ExerciseBank:
    """The exercises, kept so tests and evaluations can see the ground truth.

    Index order is curriculum order: difficulty is non-decreasing in the index
    and prerequisites always have a smaller index.
    """

    names: np.ndarray  # str, e.g. "ex017"
    difficulty: np.ndarray  # float, subtracted from the logit
    prerequisites: Tuple[Tuple[int, ...], ...]
    problem_types: Tuple[Tuple[str, ...], ...]
    problem_type_offsets: np.ndarray  # (exercises, MAX_PROBLEM_TYPES)
    popularity: np.ndarray  # relative weight of being chosen

    def __len__(self):
        return len(self.names)


@dataclasses.dataclass(frozen=True)
class SimulatedLogs:
    """Column arrays sorted by (time_done, user), as a log table would be.

    `columns` holds the ProblemLog fields plus p_true (see COLUMNS); the index
    arrays and `ability` are the hidden truth behind them.
    """

    columns: Dict[str, np.ndarray]
    user_index: np.ndarray  # int, row -> student index
    exercise_index: np.ndarray  # int, row -> index into bank
    ability: np.ndarray  # per student
    bank: ExerciseBank

    def __len__(self):
        return len(self.columns["user"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def _check_arguments(students, seed, exercises, days):
    if students < 1:
        raise ValueError(f"students must be >= 1, got {students}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if exercises < 1:
        raise ValueError(f"exercises must be >= 1, got {exercises}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")


def make_exercise_bank(exercises: int, seed: int) -> ExerciseBank:
    """Exercises depend only on (exercises, seed), not on the student count,
    so samples of different sizes share one curriculum."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, exercises, 0xE5]))
    difficulty = np.sort(rng.normal(0.0, 1.0, exercises))
    prerequisites = []
    for index in range(exercises):
        # Prerequisites come from the few exercises just below, as in a
        # curriculum where each topic builds on the previous ones.
        window = np.arange(max(0, index - 8), index)
        count = min(int(rng.integers(0, MAX_PREREQUISITES + 1)), len(window))
        chosen = rng.choice(window, size=count, replace=False) if count else []
        prerequisites.append(tuple(sorted(int(p) for p in chosen)))
    type_counts = rng.integers(1, MAX_PROBLEM_TYPES + 1, exercises)
    offsets = rng.normal(0.0, PROBLEM_TYPE_SIGMA, (exercises, MAX_PROBLEM_TYPES))
    ranks = rng.permutation(exercises) + 1
    width = max(3, len(str(exercises - 1)))
    return ExerciseBank(
        names=np.array([f"ex{i:0{width}d}" for i in range(exercises)]),
        difficulty=difficulty,
        prerequisites=tuple(prerequisites),
        problem_types=tuple(
            tuple(f"type{j}" for j in range(n)) for n in type_counts),
        problem_type_offsets=offsets,
        popularity=ranks.astype(float) ** -ZIPF_EXPONENT,
    )


def _grouped_cumsum(values: np.ndarray, group_first: np.ndarray,
                    group_sizes: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each contiguous group.

    int64 overflow of the global cumsum is harmless: numpy wraps, and the
    difference of two wrapped sums is exact when the true result fits.
    """
    total = np.cumsum(values)
    before = total[group_first] - values[group_first]
    return total - np.repeat(before, group_sizes)


def simulate(students: int, seed: int, exercises: int = 60,
             days: int = 90) -> SimulatedLogs:
    """About students * MEAN_ATTEMPTS_PER_STUDENT attempts; see module doc."""
    _check_arguments(students, seed, exercises, days)
    bank = make_exercise_bank(exercises, seed)
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, students, exercises, days, 0x5106]))
    n_ex = exercises

    # --- students ---------------------------------------------------------
    ability = rng.normal(0.0, 1.0, students)
    pace = np.exp(rng.normal(np.log(3.0), 0.4, students))  # attempts to learn
    heavy_mean = np.mean(HEAVY_USER_MULTIPLIER)
    ordinary_mean = MEAN_ATTEMPTS_PER_STUDENT / (
        1.0 + HEAVY_USER_FRACTION * (heavy_mean - 1.0))
    mu = np.log(ordinary_mean) - ATTEMPTS_SIGMA ** 2 / 2
    budget = np.exp(rng.normal(mu, ATTEMPTS_SIGMA, students))
    n_heavy = int(round(HEAVY_USER_FRACTION * students))  # 0 below ~100
    heavy = rng.choice(students, size=n_heavy, replace=False)
    # Heavy users are scaled from the typical budget, not from their own
    # draw, so one unlucky tail draw cannot make a 30,000-attempt student.
    budget[heavy] = ordinary_mean * rng.uniform(*HEAVY_USER_MULTIPLIER,
                                                len(heavy))
    n_attempts = np.maximum(1, np.rint(budget)).astype(np.int64)
    total = int(n_attempts.sum())
    user = np.repeat(np.arange(students), n_attempts)
    user_first = np.cumsum(n_attempts) - n_attempts

    # --- blocks of consecutive attempts on one exercise --------------------
    starts_block = rng.random(total) < 1.0 / MEAN_BLOCK_LENGTH
    starts_block[user_first] = True
    block_first = np.flatnonzero(starts_block)
    n_blocks = len(block_first)
    block_of = np.cumsum(starts_block) - 1
    block_len = np.diff(np.append(block_first, total))
    block_user = user[block_first]
    blocks_per_user = np.bincount(block_user, minlength=students)
    user_first_block = np.cumsum(blocks_per_user) - blocks_per_user
    block_k = np.arange(n_blocks) - user_first_block[block_user]

    # Curriculum position: start somewhere easy-ish, move up a student-
    # specific speed per block, sometimes go back to review.
    start_pos = n_ex * rng.beta(1.2, 4.0, students)
    speed = (n_ex / 60.0) * np.exp(rng.normal(0.0, 0.5, students))
    target = (start_pos[block_user] + speed[block_user] * block_k
              + rng.normal(0.0, 1.0, n_blocks))
    review = rng.random(n_blocks) < REVIEW_PROBABILITY
    target[review] *= rng.random(int(review.sum()))
    target = np.clip(target, 0, n_ex - 1).astype(np.int64)
    half_width = max(2, int(round(n_ex / 20)))
    low = np.clip(target - half_width, 0, n_ex - 1)
    high = np.clip(target + half_width, 0, n_ex - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(bank.popularity)])
    draw = cumulative[low] + rng.random(n_blocks) * (
        cumulative[high + 1] - cumulative[low])
    block_ex = np.clip(np.searchsorted(cumulative, draw, side="right") - 1,
                       low, high)

    # --- practice counts before each block, per (student, exercise) --------
    # Sorting blocks by (student, exercise, block ordinal) turns "attempts on
    # exercise e before block k" into a grouped cumsum plus a searchsorted.
    k_span = int(block_k.max()) + 1
    pair = block_user.astype(np.int64) * n_ex + block_ex
    order = np.argsort(pair * k_span + block_k, kind="stable")
    sorted_key = (pair * k_span + block_k)[order]
    sorted_pair = pair[order]
    sorted_len = block_len[order]
    new_pair = np.ones(n_blocks, dtype=bool)
    new_pair[1:] = sorted_pair[1:] != sorted_pair[:-1]
    pair_first = np.flatnonzero(new_pair)
    pair_sizes = np.diff(np.append(pair_first, n_blocks))
    done_through = _grouped_cumsum(sorted_len, pair_first, pair_sizes)
    pair_id = np.cumsum(new_pair) - 1
    deviation = rng.normal(0.0, 1.0, len(pair_first))  # per (student, ex)
    block_done_before = np.empty(n_blocks, dtype=np.int64)
    block_done_before[order] = done_through - sorted_len
    block_deviation = np.empty(n_blocks)
    block_deviation[order] = deviation[pair_id]

    prereq_table = np.full((n_ex, MAX_PREREQUISITES), -1, dtype=np.int64)
    for index, prereqs in enumerate(bank.prerequisites):
        prereq_table[index, :len(prereqs)] = prereqs
    mastery_sum = np.zeros(n_blocks)
    transfer_sum = np.zeros(n_blocks)
    prereq_count = np.zeros(n_blocks)
    block_pace = pace[block_user]
    for column in range(MAX_PREREQUISITES):
        prereq = prereq_table[block_ex, column]
        has = prereq >= 0
        want = block_user.astype(np.int64) * n_ex + np.maximum(prereq, 0)
        at = np.searchsorted(sorted_key, want * k_span + block_k) - 1
        found = has & (at >= 0) & (sorted_pair[np.maximum(at, 0)] == want)
        at = np.maximum(at, 0)
        practised = np.where(found, done_through[at], 0)
        mastery = np.where(has, 1.0 - np.exp(-practised / block_pace), 0.0)
        mastery_sum += mastery
        transfer_sum += np.where(found, mastery * deviation[pair_id[at]], 0.0)
        prereq_count += has
    with np.errstate(invalid="ignore", divide="ignore"):
        readiness = np.where(prereq_count > 0, mastery_sum / prereq_count, 1.0)
        transfer = np.where(prereq_count > 0, transfer_sum / prereq_count, 0.0)

    # --- attempts -----------------------------------------------------------
    exercise = block_ex[block_of]
    done_before = block_done_before[block_of] + (
        np.arange(total) - block_first[block_of])
    type_counts = np.array([len(t) for t in bank.problem_types])
    type_index = np.minimum(
        (type_counts[exercise] * rng.random(total) ** 1.5).astype(np.int64),
        type_counts[exercise] - 1)
    own_mastery = 1.0 - np.exp(-done_before / pace[user])
    logit = (BASE_LOGIT + ability[user] - bank.difficulty[exercise]
             - bank.problem_type_offsets[exercise, type_index]
             + EXERCISE_DEVIATION_SIGMA * block_deviation[block_of]
             + MASTERY_GAIN * own_mastery
             - PREREQUISITE_PENALTY * (1.0 - readiness[block_of])
             + PREREQUISITE_TRANSFER * transfer[block_of])
    p_true = 1.0 / (1.0 + np.exp(-logit))
    correct = rng.random(total) < p_true

    time_taken = np.maximum(1, np.rint(np.exp(
        np.log(25.0) + 0.4 * ~correct - 0.15 * ability[user]
        + rng.normal(0.0, 0.6, total)))).astype(np.int64)
    count_hints = np.where(correct, 0, rng.poisson(0.7, total))
    count_attempts = np.where(correct, 1, 1 + rng.poisson(1.0, total))

    # --- timestamps ---------------------------------------------------------
    # Each attempt ends (time_taken + thinking time + sub-second jitter) after
    # the previous one; sessions add a gap, and the gaps of each student are
    # scaled to fit the student's attempts inside `days`. Every gap is at
    # least 1 us, so times are strictly increasing per student.
    think = rng.exponential(20.0, total)
    gaps = ((time_taken + think) * 1e6).astype(np.int64) + rng.integers(
        1, 1_000_000, total)
    span = days * _DAY_MICROS
    busy = np.bincount(user, weights=gaps, minlength=students)
    free = np.maximum(0.0, span - busy - 3600e6)
    start = rng.random(students) * 0.6 * free
    between = (free - start) * rng.uniform(0.3, 1.0, students)
    new_session = rng.random(n_blocks) < NEW_SESSION_PROBABILITY
    new_session[user_first_block] = False  # the first session starts at start
    session_first = block_first[new_session]
    weight = rng.exponential(1.0, len(session_first))
    weight_sum = np.bincount(user[session_first], weights=weight,
                             minlength=students)
    session_gap = weight / weight_sum[user[session_first]] * between[
        user[session_first]]
    gaps[session_first] += session_gap.astype(np.int64)
    gaps[user_first] += start.astype(np.int64)
    time_done = START_TIME_MICROS + _grouped_cumsum(gaps, user_first,
                                                    n_attempts)

    # --- rows in log-table order -------------------------------------------
    row = np.lexsort((user, time_done))
    exercise = exercise[row]
    user = user[row]
    type_names = np.array([f"type{j}" for j in range(MAX_PROBLEM_TYPES)])
    width = max(6, len(str(students - 1)))
    user_names = np.array([f"u{i:0{width}d}" for i in range(students)])
    columns = {
        "user": user_names[user],
        "exercise": bank.names[exercise],
        "problem_type": type_names[type_index[row]],
        "problem_number": (done_before + 1)[row],
        "time_done": time_done[row],
        "correct": correct[row],
        "time_taken": time_taken[row],
        "count_hints": count_hints[row].astype(np.int64),
        "count_attempts": count_attempts[row].astype(np.int64),
        "p_true": p_true[row],
    }
    return SimulatedLogs(columns=columns, user_index=user,
                         exercise_index=exercise, ability=ability, bank=bank)


def oracle_log_likelihood(logs: SimulatedLogs) -> float:
    """Mean log likelihood of the true probabilities: the ceiling a model
    trained on these logs can approach but, on average, not beat."""
    p = logs["p_true"]
    return float(np.mean(np.log(np.where(logs["correct"], p, 1.0 - p))))
