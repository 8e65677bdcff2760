"""KnowledgeState replay: the features a student had at each attempt.

Two implementations of the feature contract (docs/how-it-works.md) live here on
purpose, with the training-row block both produce and the saved-state
events a replay continues from (about 670 lines: kept together so the
contract has one home, and the tests hold the two equal):

* ExerciseState / KnowledgeState: one attempt at a time, written to read like
  the specification. Serving uses it, and tests use it as the reference.
* replay_students: the same numbers for a batch of students at once with numpy
  (lagged sums instead of per-attempt loops), which is what the pipeline runs.

Features are always computed *before* the attempt updates the state, so a row
never sees its own label.
"""

import collections
import hashlib
import math
import operator
import zlib
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse

from models.log_batch import (EMPTY_CODES, Columns, LogBatch, compact_codes, merge_codes,
                              name_hashes, unique_codes)
from models.problem_log import ProblemLog
from models.student_features import (STUDENT_FEATURE_NAMES, StudentTotals,
                                     student_feature_columns)

WINDOW = 20
EWMA_START = 0.9
EWMA_WEIGHTS = (0.333, 0.1)
EMPTY_PERCENT_CORRECT = 0.8
BASE_FEATURE_NAMES = ("bias", "ewma_3", "ewma_10", "streak", "log_num_done",
                      "log_num_missed", "percent_correct")
NUM_BASE_FEATURES = len(BASE_FEATURE_NAMES)

ComponentKey = Tuple[str, str, bool]  # (exercise, problem_type, correct)


def feature_names(num_random_features: int, student_features: bool = False) -> List[str]:
    """x's columns: bias, the knowledge features, with --student_features the
    student-level ones (models.student_features), then r."""
    return (list(BASE_FEATURE_NAMES) + list(STUDENT_FEATURE_NAMES if student_features else ())
            + [f"random_{i + 1}" for i in range(num_random_features)])


def random_component(key: ComponentKey, seed: int, dim: int) -> np.ndarray:
    """Unit vector of `dim` standard-normal draws, a pure function of
    (exercise, problem_type, correct) and the model seed, so every worker, every
    run and the serving side derive the same vector without sharing state."""
    exercise, problem_type, correct = key
    text = "\x1f".join((str(seed), _escaped(exercise), _escaped(problem_type),
                        "1" if correct else "0"))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))
    vector = rng.standard_normal(dim)
    return vector / np.linalg.norm(vector)


def _escaped(name: str) -> str:
    """`name` with the \\x1f separator (and the \\x1b escape) escaped, so the
    joined key is unambiguous for any names; names without them are unchanged,
    and so are the vectors of models trained before this rule."""
    if "\x1b" in name or "\x1f" in name:
        return name.replace("\x1b", "\x1b\x1b").replace("\x1f", "\x1b\x1f")
    return name


# The vectors computed in this process, per (seed, dim), shared by every
# ComponentCache: a worker computes a key's vector once, not once per step
# that needs it (replay, fit, the components output; with thousands of
# exercises each recomputation cost ~0.8 s, measured). Never modified in place.
_VECTORS: Dict[Tuple[int, int], Dict[ComponentKey, np.ndarray]] = {}


class ComponentCache:
    """Memoises random_component for one (seed, dim), in this process's
    shared table. `used` collects the keys asked for since the caller last
    cleared it, so the components actually used can be saved with the
    parameters."""

    def __init__(self, seed: int, dim: int):
        self.seed = seed
        self.dim = dim
        self.vectors: Dict[ComponentKey, np.ndarray] = _VECTORS.setdefault((seed, dim), {})
        self.used: set = set()

    def __call__(self, key: ComponentKey) -> np.ndarray:
        self.used.add(key)
        vector = self.vectors.get(key)
        if vector is None:
            vector = self.vectors[key] = random_component(key, self.seed, self.dim)
        return vector

    def matrix(self, keys: Sequence[ComponentKey]) -> np.ndarray:
        """The vectors of `keys` as the rows of one (len(keys), dim) array
        (set operations and one itemgetter instead of a call per key: with
        thousands of exercises, a fit's keys outnumber its rows)."""
        if not keys:
            return np.zeros((0, self.dim))
        self.used.update(keys)
        for key in set(keys).difference(self.vectors):
            self.vectors[key] = random_component(key, self.seed, self.dim)
        return np.array(operator.itemgetter(*keys)(self.vectors)).reshape(len(keys), self.dim)


class ExerciseState:
    """The last WINDOW answers on one exercise."""

    def __init__(self):
        self.answers = collections.deque(maxlen=WINDOW)

    def features(self) -> List[float]:
        """[ewma_3, ewma_10, streak, log_num_done, log_num_missed, percent_correct]."""
        total_done = len(self.answers)
        total_correct = sum(self.answers)
        ewmas = []
        for weight in EWMA_WEIGHTS:
            value = EWMA_START
            for answer in self.answers:
                value = weight * answer + (1 - weight) * value
            ewmas.append(value)
        streak = 0
        for answer in reversed(self.answers):
            if not answer:
                break
            streak += 1
        return ewmas + [
            float(streak),
            math.log(total_done) if total_done else 0.0,
            math.log(total_done - total_correct + 1),
            total_correct / total_done if total_done else EMPTY_PERCENT_CORRECT,
        ]

    def update(self, correct: bool) -> None:
        self.answers.append(1 if correct else 0)


class KnowledgeState:
    """One student's state: an ExerciseState per exercise plus the random vector r
    (and, with student_features, the counts over all exercises)."""

    def __init__(self, components: ComponentCache, student_features: bool = False):
        self.components = components
        self.exercises: Dict[str, ExerciseState] = {}
        self.random_features = np.zeros(components.dim)
        self.totals = StudentTotals() if student_features else None

    def features(self, exercise: str) -> np.ndarray:
        state = self.exercises.get(exercise) or ExerciseState()
        student = self.totals.features() if self.totals is not None else []
        return np.concatenate(([1.0], state.features(), student, self.random_features))

    def update(self, log: ProblemLog) -> None:
        self.exercises.setdefault(log.exercise, ExerciseState()).update(log.correct)
        if self.totals is not None:
            self.totals.update(log.correct)
        if log.problem_number == 1:
            self.random_features = self.random_features + self.components(
                (log.exercise, log.problem_type, log.correct))


def sessionize(logs: Iterable[ProblemLog]) -> Tuple[List[ProblemLog], int]:
    """Chronological order with a deterministic tie-break (every field), exact
    duplicates removed, conflicting duplicates removed (see
    sessionize_with_conflicts), problem_number derived where absent.
    Returns (logs, number of exact duplicates dropped)."""
    ordered, duplicates, _ = sessionize_with_conflicts(logs)
    return ordered, duplicates


def sessionize_with_conflicts(logs: Iterable[ProblemLog]
                              ) -> Tuple[List[ProblemLog], int, List[ProblemLog]]:
    """sessionize, also returning the conflicting duplicates it removed: logs
    of the same exercise, time_done and problem_number with different
    `correct`. Neither answer can be trusted, and keeping both would show the
    second its twin's label in its features, so all of them go."""
    ordered = sorted(logs, key=_time_done)
    conflicts: List[ProblemLog] = []
    copies = 0
    if any(a.time_done == b.time_done for a, b in zip(ordered, ordered[1:])):
        ordered.sort(key=_sort_key)  # ties: break them by every field
        ordered, conflicts, copies = _without_conflicts(ordered)
    unique: List[ProblemLog] = []
    for log in ordered:
        if not unique or log != unique[-1]:
            unique.append(log)
    duplicates = len(ordered) - len(unique) + copies
    attempts_so_far: Dict[str, int] = collections.Counter()
    sessionized = []
    for log in unique:
        attempts_so_far[log.exercise] += 1
        if log.problem_number is None:
            log = log._replace(problem_number=attempts_so_far[log.exercise])
        sessionized.append(log)
    return sessionized, duplicates, conflicts


def _without_conflicts(ordered: List[ProblemLog]):
    """(logs without conflicting duplicates, the conflicting logs (each exact
    copy once), the number of exact copies among them) for logs sorted by
    _sort_key, where equal (time_done, exercise) are adjacent."""
    kept: List[ProblemLog] = []
    conflicts: List[ProblemLog] = []
    copies = 0
    start = 0
    while start < len(ordered):
        end = start + 1
        key = (ordered[start].time_done, ordered[start].exercise)
        while end < len(ordered) and (ordered[end].time_done, ordered[end].exercise) == key:
            end += 1
        run = ordered[start:end]
        if len(run) > 1:
            answers: Dict = collections.defaultdict(set)
            for log in run:
                answers[log.problem_number].add(log.correct)
            bad = {number for number, seen in answers.items() if len(seen) > 1}
            for log in run:
                if log.problem_number not in bad:
                    kept.append(log)
                elif conflicts and log == conflicts[-1]:
                    copies += 1
                else:
                    conflicts.append(log)
        else:
            kept.extend(run)
        start = end
    return kept, conflicts, copies


_time_done = operator.attrgetter("time_done")


def _sort_key(log: ProblemLog):
    # (present?, value) so that None sorts apart from every number.
    return (log.time_done, log.exercise, log.problem_type, log.correct,
            *((value is not None, value or 0)
              for value in (log.problem_number, log.time_taken, log.count_hints,
                            log.count_attempts)))


def reference_replay(logs: Sequence[ProblemLog], components: ComponentCache,
                     problem_number_range=(1, None), student_features: bool = False
                     ) -> List[Tuple[ProblemLog, np.ndarray]]:
    """Specification-shaped replay of one sessionized student: (log, x) rows."""
    low, high = problem_number_range
    state = KnowledgeState(components, student_features)
    rows = []
    for log in logs:
        if log.problem_number >= low and (high is None or log.problem_number < high):
            rows.append((log, state.features(log.exercise)))
        state.update(log)
    return rows


def user_hash(user: str) -> int:
    """A stable 64-bit hash of the user id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(user.encode("utf-8"), digest_size=8).digest(),
                          "little")


def _codes_per_block(block_of: np.ndarray, codes: np.ndarray, num_blocks: int, domain: int):
    """Codes in [0, domain) grouped in blocks (block_of non-decreasing) ->
    (bounds, used, local): block b uses the codes used[bounds[b]:bounds[b+1]]
    (sorted), and local[i] is codes[i]'s position among its block's."""
    size = max(domain, 1)
    pairs, position = unique_codes(block_of * size + codes, num_blocks * size)
    bounds = np.searchsorted(pairs // size, np.arange(num_blocks + 1))
    return bounds, (pairs % size).tolist(), (position - bounds[block_of]).astype(np.int32)


def _block_names(names: Sequence, per_block, block: int) -> tuple:
    """The names block `block` uses, from _codes_per_block's (bounds, used, _)."""
    bounds, used, _ = per_block
    return tuple([names[code] for code in used[bounds[block]:bounds[block + 1]]])


def exercise_shards(exercises: Sequence[str], num_shards: int) -> np.ndarray:
    """Per exercise name, its shard in [0, num_shards): a stable hash (CRC-32
    of its UTF-8 bytes), the same on every worker and in every run."""
    return np.fromiter((zlib.crc32(name.encode("utf-8", "surrogatepass")) for name in exercises),
                       dtype=np.int64, count=len(exercises)) % num_shards


def ragged_take(indptr: np.ndarray, index: np.ndarray):
    """Rows `index` of a CSR-style ragged array: (their indptr, the positions
    of their values in the values array)."""
    lengths = np.diff(indptr)[index]
    new_indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    positions = (np.repeat(indptr[:-1][index] - new_indptr[:-1], lengths)
                 + np.arange(new_indptr[-1]))
    return new_indptr, positions


class TrainingRows(Columns):
    """A block of training rows as columns: what travels between pipeline steps
    instead of one element per attempt.

    Users and exercises are integer codes into the block's own tuples of
    names (`user` and `exercise` give the names per row): an object array of
    names cost more to pickle between steps than all the numeric columns
    together (measured).

    The random part of x is kept factorised: row i's r is the sum of the
    components of the keys update_ids[update_indptr[i]:update_indptr[i+1]]
    (indices into component_keys, in the order they were added). That is
    ~10 small ints per row instead of D floats, which cuts what the shuffle
    moves several-fold; features() materialises x where it is needed. A row
    whose student has added more than 2 D components (a long history) carries
    its r as D floats instead (dense_rows, dense_r): ids would cost more, and
    would grow with the square of the history."""

    __slots__ = ("users", "user_code", "user_hash", "exercises", "exercise_code", "time_done",
                 "problem_number", "correct", "base", "update_indptr", "update_ids",
                 "component_keys", "dense_rows", "dense_r")
    _ROW_COLUMNS = ("user_hash", "time_done", "problem_number", "correct", "base")

    def __init__(self, users, user_code, user_hash, exercises, exercise_code, time_done,
                 problem_number, correct, base, update_indptr, update_ids, component_keys,
                 dense_rows=None, dense_r=None):
        self.users = tuple(users)             # str names (a take keeps only those used)
        self.user_code = user_code            # int32 into users
        self.user_hash = user_hash            # uint64 user_hash(user): sampling, holdout
        self.exercises = tuple(exercises)     # str names (a take keeps only those used)
        self.exercise_code = exercise_code    # int32 into exercises
        self.time_done = time_done            # int64 epoch microseconds
        self.problem_number = problem_number  # int64
        self.correct = correct                # bool
        # float64 (rows, NUM_BASE_FEATURES [+ NUM_STUDENT_FEATURES]), bias first:
        # every dense column of x before r
        self.base = base
        self.update_indptr = update_indptr    # int64 (rows + 1)
        self.update_ids = update_ids          # int32 indices into component_keys
        self.component_keys = component_keys  # tuple of ComponentKey
        # int64 rows whose r is dense_r[j] (their update lists are empty)
        self.dense_rows = np.zeros(0, np.int64) if dense_rows is None else dense_rows
        self.dense_r = np.zeros((0, 0)) if dense_r is None else dense_r  # float64

    def __len__(self):
        return len(self.correct)

    @property
    def user(self) -> np.ndarray:
        """Per row, the user's name (an object array, built on each access)."""
        return np.array(self.users, dtype=object)[self.user_code]

    @property
    def exercise(self) -> np.ndarray:
        """Per row, the exercise's name (an object array, built on each access)."""
        return np.array(self.exercises, dtype=object)[self.exercise_code]

    def rows_per_exercise(self) -> Dict[str, int]:
        """{exercise: its number of rows}, for the exercises with rows."""
        counts = np.bincount(self.exercise_code, minlength=len(self.exercises))
        return {name: count for name, count in zip(self.exercises, counts.tolist()) if count}

    @staticmethod
    def empty() -> "TrainingRows":
        return TrainingRows((), EMPTY_CODES, np.array([], dtype=np.uint64), (), EMPTY_CODES,
                            np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                            np.array([], dtype=bool), np.zeros((0, NUM_BASE_FEATURES)),
                            np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), ())

    def take(self, index, compact: bool = True) -> "TrainingRows":
        """Rows `index`. With `compact` (the default) they carry only the names
        and keys they use: a block must not carry those of the whole batch it
        came from (exercises x keys across thousands of blocks). Without, the
        dictionaries stay as they are (for a caller that compacts per block)."""
        index = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        indptr, positions = ragged_take(self.update_indptr, index)
        ids, users, user_code, exercises, exercise_code = (
            self.update_ids[positions], self.users, self.user_code[index], self.exercises,
            self.exercise_code[index])
        keys = self.component_keys
        if compact:
            used, ids = unique_codes(ids, len(keys))
            keys = tuple([keys[i] for i in used.tolist()])
            users, user_code = compact_codes(users, user_code)
            exercises, exercise_code = compact_codes(exercises, exercise_code)
        dense_rows, dense_r = self.dense_rows, self.dense_r
        if len(dense_rows):
            where = np.full(len(self), -1, dtype=np.int64)
            where[dense_rows] = np.arange(len(dense_rows))
            selected = where[index]
            dense_rows = np.flatnonzero(selected >= 0)
            dense_r = dense_r[selected[dense_rows]]
        return TrainingRows(users, user_code, self.user_hash[index], exercises, exercise_code,
                            *(getattr(self, name)[index] for name in self._ROW_COLUMNS[1:]),
                            indptr, ids, keys, dense_rows, dense_r)

    @staticmethod
    def concatenate(blocks: Sequence["TrainingRows"]) -> "TrainingRows":
        # Empty blocks (a count without rows) may have another base width.
        blocks = [block for block in blocks if len(block)] or list(blocks[:1])
        if len(blocks) <= 1:
            return blocks[0] if blocks else TrainingRows.empty()
        keys: Dict[ComponentKey, int] = {}
        indptrs, ids = [np.zeros(1, dtype=np.int64)], []
        offset = 0
        for block in blocks:
            remap = np.array([keys.setdefault(key, len(keys)) for key in block.component_keys]
                             + [0], dtype=np.int32)
            ids.append(remap[block.update_ids])
            indptrs.append(block.update_indptr[1:] + offset)
            offset += block.update_indptr[-1]
        starts = np.cumsum([0] + [len(block) for block in blocks])
        dense = [(block.dense_rows + start, block.dense_r)
                 for block, start in zip(blocks, starts) if len(block.dense_rows)]
        users, user_code = merge_codes([(block.users, block.user_code) for block in blocks])
        exercises, exercise_code = merge_codes([(block.exercises, block.exercise_code)
                                                for block in blocks])
        columns = [np.concatenate([getattr(block, name) for block in blocks])
                   for name in TrainingRows._ROW_COLUMNS]
        return TrainingRows(
            users, user_code, columns[0], exercises, exercise_code, *columns[1:],
            np.concatenate(indptrs), np.concatenate(ids).astype(np.int32), tuple(keys),
            *((np.concatenate([rows for rows, _ in dense]),
               np.concatenate([r for _, r in dense])) if dense else ()))

    def split_by_exercise(self) -> Iterable[Tuple[str, "TrainingRows"]]:
        """(exercise, its rows in their original order), exercises in code order."""
        return self._split(self.exercise_code, self.exercises)

    def split_by_shard(self, num_shards: int) -> Iterable[Tuple[int, "TrainingRows"]]:
        """(shard, its rows in their original order): exercise_shards' shard
        of every row's exercise, so an exercise's rows always share a shard."""
        shards = exercise_shards(self.exercises, num_shards)
        return self._split(shards[self.exercise_code], range(num_shards))

    def _split(self, group_of_row: np.ndarray, groups: Sequence) -> Iterable[Tuple]:
        """(groups[g], the rows of group g in their original order) for every
        group with rows, in group order."""
        order = np.argsort(group_of_row, kind="stable")
        num_blocks = len(groups)
        bounds = np.searchsorted(group_of_row[order], np.arange(num_blocks + 1))
        # One take, then every block as slices of it, each with only the
        # names and keys its own rows use: a take per exercise cost ~0.4 ms,
        # most of the replay's time with thousands of exercises (measured).
        rows = self.take(order, compact=False)
        block_of_row = np.repeat(np.arange(num_blocks), np.diff(bounds))
        block_of_update = np.repeat(block_of_row, np.diff(rows.update_indptr))
        keys = _codes_per_block(block_of_update, rows.update_ids, num_blocks,
                                len(rows.component_keys))
        users = _codes_per_block(block_of_row, rows.user_code, num_blocks, len(rows.users))
        exercises = _codes_per_block(block_of_row, rows.exercise_code, num_blocks,
                                     len(rows.exercises))
        update_bounds = rows.update_indptr[bounds]
        dense_bounds = np.searchsorted(rows.dense_rows, bounds)
        for block in np.flatnonzero(np.diff(bounds)).tolist():
            low, high = bounds[block], bounds[block + 1]
            updates = slice(update_bounds[block], update_bounds[block + 1])
            dense = slice(dense_bounds[block], dense_bounds[block + 1])
            yield groups[block], TrainingRows(
                _block_names(rows.users, users, block), users[2][low:high],
                rows.user_hash[low:high],
                _block_names(rows.exercises, exercises, block), exercises[2][low:high],
                *(getattr(rows, column)[low:high] for column in self._ROW_COLUMNS[1:]),
                rows.update_indptr[low:high + 1] - update_bounds[block], keys[2][updates],
                _block_names(rows.component_keys, keys, block),
                rows.dense_rows[dense] - low, rows.dense_r[dense])

    def features(self, components: "ComponentCache") -> np.ndarray:
        """The dense x = [bias, base features, r]: (rows, base columns + D).
        r is the sum of the row's components (the one-attempt-at-a-time replay
        adds them in another order: equal to rounding, ~1e-16)."""
        width = self.base.shape[1]
        # Fortran order: the fit's matrix-vector products run 2x faster on it.
        x = np.zeros((len(self), width + components.dim), order="F")
        x[:, :width] = self.base
        if len(self.update_ids):
            vectors = components.matrix(self.component_keys)
            # r = (rows x keys counts) @ (keys x D): one sparse product in C
            # instead of a numpy pass per update position (6x faster measured).
            updates = scipy.sparse.csr_matrix(
                (np.ones(len(self.update_ids)), self.update_ids, self.update_indptr),
                shape=(len(self), len(self.component_keys)))
            x[:, width:] = updates @ vectors
        if len(self.dense_rows):
            x[self.dense_rows, width:] = self.dense_r
        return x


def _ewma_coefficients(weight: float) -> np.ndarray:
    """coef[j] multiplies the answer j+1 attempts back."""
    return weight * (1 - weight) ** np.arange(WINDOW)


def _exercise_features(group: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Base features (without bias) for attempts already ordered by
    (student-exercise group, time). Uses lagged sums over the window so the
    batch needs O(WINDOW) numpy passes rather than a Python loop per attempt."""
    n = len(group)
    answers = correct.astype(np.float64)
    index = np.arange(n)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    done_before = index - group_start
    total_done = np.minimum(done_before, WINDOW)

    cumulative = np.r_[0.0, np.cumsum(answers)]   # cumulative[i] = sum(answers[:i])
    total_correct = cumulative[index] - cumulative[index - total_done]

    # Trailing run of correct answers: distance back to the last wrong answer.
    last_wrong = np.where(answers == 0, index, -1)
    last_wrong[starts] = np.maximum(last_wrong[starts], starts - 1)
    last_wrong = np.maximum.accumulate(last_wrong)
    previous_last_wrong = np.r_[-1, last_wrong[:-1]]
    streak = np.where(done_before > 0, index - 1 - previous_last_wrong, 0)
    streak = np.minimum(streak, total_done)

    features = np.empty((n, NUM_BASE_FEATURES - 1))
    for column, weight in enumerate(EWMA_WEIGHTS):
        coefficients = _ewma_coefficients(weight)
        value = EWMA_START * (1 - weight) ** total_done
        for lag in range(1, WINDOW + 1):
            lagged = np.zeros(n)
            lagged[lag:] = answers[:-lag] if lag < n else 0
            value = value + np.where(total_done >= lag, coefficients[lag - 1] * lagged, 0.0)
        features[:, column] = value
    features[:, 2] = streak
    with np.errstate(divide="ignore", invalid="ignore"):
        features[:, 3] = np.where(total_done > 0, np.log(np.maximum(total_done, 1)), 0.0)
        features[:, 4] = np.log(total_done - total_correct + 1)
        features[:, 5] = np.where(total_done > 0, total_correct / np.maximum(total_done, 1),
                                  EMPTY_PERCENT_CORRECT)
    return features


class PriorEvents(NamedTuple):
    """What saved states (models.student_state) add before a batch's first
    attempts, in the batch's codes: exercises and problem_types are the
    batch's names followed by names only the states use. Answers are oldest
    first within each (student, exercise)."""
    exercises: tuple
    problem_types: tuple
    answer_student: np.ndarray   # int64 student index in the batch
    answer_exercise: np.ndarray  # int64 codes into exercises
    answers: np.ndarray          # bool
    update_student: np.ndarray   # int64: the student's problem_number == 1 attempts,
    update_exercise: np.ndarray  # int64   the components r sums
    update_type: np.ndarray      # int64 codes into problem_types
    update_correct: np.ndarray   # bool
    update_order: np.ndarray     # int64 position among the student's updates
    student_done: np.ndarray     # int64 per batch student: saved attempts, all exercises
    student_correct: np.ndarray  # int64 per batch student: the correct ones among them


def replay_students(students: Sequence[Sequence[ProblemLog]], components: ComponentCache,
                    problem_number_range=(1, None), student_features: bool = False
                    ) -> TrainingRows:
    """Replay a batch of sessionized students (each a time-ordered list of logs)
    and return the emitted training rows in (student, time) order. The keys of
    the random components the rows use are added to `components.used`."""
    lengths = [len(logs) for logs in students if logs]
    batch = LogBatch.from_logs([log for logs in students for log in logs])
    return replay_batch(batch, np.r_[0, np.cumsum(lengths, dtype=np.int64)], components,
                        problem_number_range, student_features=student_features)


def _no_prior(batch: LogBatch) -> PriorEvents:
    nothing = np.zeros(0, dtype=np.int64)
    return PriorEvents(batch.exercises or ("",), batch.problem_types or ("",), nothing,
                       nothing, np.zeros(0, dtype=bool), nothing, nothing, nothing,
                       np.zeros(0, dtype=bool), nothing, None, None)


def replay_batch(batch: LogBatch, student_starts: np.ndarray, components: ComponentCache,
                 problem_number_range=(1, None),
                 prior: Optional[PriorEvents] = None,
                 student_features: bool = False) -> TrainingRows:
    """replay_students on columns: `batch` holds sessionized students (every
    problem_number set), student i in rows student_starts[i]:student_starts[i+1]
    in time order (models.log_batch.sessionize_batch gives this). With `prior`
    the students start from their saved states instead of empty ones. With
    `student_features` the base columns also hold models.student_features'
    (counted on from the saved states' counts).

    A row's random part lists only its own student's earlier updates, so rows do
    not depend on which other students share the batch (results are identical
    however Beam bundles the work)."""
    n = len(batch)
    lengths = np.diff(student_starts)
    if n == 0:
        return TrainingRows.empty()
    correct = batch.correct
    problem_number = batch.problem_number
    num_students = len(lengths)
    student_of_row = np.repeat(np.arange(num_students), lengths)
    prior = prior or _no_prior(batch)
    exercises, types = prior.exercises, prior.problem_types

    # Base features: group the saved answers and the rows by (student,
    # exercise), stable so that saved answers come first, then time order.
    group = np.r_[prior.answer_student * len(exercises) + prior.answer_exercise,
                  student_of_row * len(exercises) + batch.exercise]
    order = np.argsort(group, kind="stable")
    base = np.empty((len(group), NUM_BASE_FEATURES - 1))
    base[order] = _exercise_features(group[order], np.r_[prior.answers, correct][order])
    base = base[len(prior.answers):]

    # Random features: r before an attempt is the sum of the components of the
    # student's earlier problem_number == 1 attempts (saved ones first), kept
    # as their key ids.
    is_update = problem_number == 1
    update_rows = np.flatnonzero(is_update)
    update_student = np.r_[prior.update_student, student_of_row[update_rows]]
    key_codes = ((np.r_[prior.update_exercise, batch.exercise[update_rows]] * len(types)
                  + np.r_[prior.update_type, batch.problem_type[update_rows]]) * 2
                 + np.r_[prior.update_correct, correct[update_rows]])
    sequence = np.lexsort((np.r_[prior.update_order, update_rows],
                           np.r_[np.zeros(len(prior.update_order)), np.ones(len(update_rows))],
                           update_student))
    used_codes, update_key_ids = unique_codes(key_codes[sequence],
                                              len(exercises) * len(types) * 2)
    component_keys = tuple((exercises[code // 2 // len(types)],
                            types[code // 2 % len(types)], bool(code % 2))
                           for code in used_codes.tolist())
    components.used.update(component_keys)
    # A row's updates: its student's saved ones, then those of the batch before it.
    saved_updates = np.bincount(prior.update_student, minlength=num_students)
    first_new_update = np.searchsorted(update_rows, student_starts[:-1])
    updates_start = np.searchsorted(update_student[sequence],
                                    np.arange(num_students))[student_of_row]
    updates_before_row = (updates_start + saved_updates[student_of_row]
                          + np.cumsum(is_update) - is_update
                          - first_new_update[student_of_row])

    low, high = problem_number_range
    emit = problem_number >= low
    if high is not None:
        emit &= problem_number < high
    rows = np.flatnonzero(emit)
    student = (student_feature_columns(student_starts, correct, prior.student_done,
                                       prior.student_correct)[rows]
               if student_features else None)
    base_x = np.empty((len(rows), NUM_BASE_FEATURES + (0 if student is None else student.shape[1])))
    base_x[:, 0] = 1.0
    base_x[:, 1:NUM_BASE_FEATURES] = base[rows]
    if student is not None:
        base_x[:, NUM_BASE_FEATURES:] = student
    # Row i's updates are update_key_ids[updates_start[i]:updates_before_row[i]].
    starts, stops = updates_start[rows], updates_before_row[rows]
    dense = {}
    long_history = stops - starts > 2 * components.dim
    if long_history.any():
        # r of these rows from a running sum of the batch's update vectors: a
        # row costs D floats however long its student's history is.
        vectors = components.matrix(component_keys)
        running = np.zeros((len(update_key_ids) + 1, components.dim))
        np.cumsum(vectors[update_key_ids], axis=0, out=running[1:])
        dense_rows = np.flatnonzero(long_history)
        dense = {"dense_rows": dense_rows,
                 "dense_r": running[stops[dense_rows]] - running[starts[dense_rows]]}
        stops = np.where(long_history, starts, stops)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(stops - starts, out=indptr[1:])
    positions = np.repeat(starts - indptr[:-1], stops - starts) + np.arange(indptr[-1])
    user_code = batch.user[rows]
    return TrainingRows(
        users=batch.users, user_code=user_code, user_hash=name_hashes(batch.users)[user_code],
        exercises=batch.exercises, exercise_code=batch.exercise[rows],
        time_done=batch.time_done[rows],
        problem_number=problem_number[rows],
        correct=correct[rows],
        base=base_x,
        update_indptr=indptr,
        update_ids=update_key_ids[positions],
        component_keys=component_keys,
        **dense,
    )
