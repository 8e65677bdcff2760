"""ProblemLogs as columns, and the per-student work on them done for a whole
batch of students at once.

A LogBatch is what travels between the pipeline's steps instead of one Python
object per attempt: numpy columns, with user, exercise and problem type as
integer codes into per-batch dictionaries (a batch carries only the names its
rows use). sessionize_batch() is models.knowledge_state.sessionize_with_conflicts
for every student of a batch in one vectorized pass: the same order (time, then
every field), the same exact duplicates, conflicting duplicates and derived
problem numbers; tests compare the two on random students.
"""

import hashlib
import math
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from models.problem_log import OPTIONAL_INT_FIELDS, ProblemLog

_NAME_COLUMNS = (("users", "user"), ("exercises", "exercise"), ("problem_types", "problem_type"))
_VALUE_COLUMNS = ("problem_number", "time_done", "correct", "optional", "optional_present")
EMPTY_CODES = np.zeros(0, dtype=np.int32)
_ALIGNMENT = 16  # bytes: every packed array starts aligned (Columns)


def _codes(names: Sequence[str], index: Dict[str, int]) -> np.ndarray:
    return np.fromiter((index.setdefault(name, len(index)) for name in names),
                       dtype=np.int32, count=len(names))


def unique_codes(codes: np.ndarray, domain: int) -> Tuple[np.ndarray, np.ndarray]:
    """np.unique(codes, return_inverse=True) for integer codes in [0, domain):
    (the sorted codes used, int32 positions of each code among them). A
    presence mask is O(len + domain) where np.unique sorts; on the pipeline's
    hot paths (millions of codes from a few thousand) it was most of the time
    (measured), so the sort is kept only for a domain much wider than the codes."""
    codes = np.asarray(codes).reshape(-1)
    if domain > max(4 * len(codes), 1 << 16):
        used, inverse = np.unique(codes, return_inverse=True)
        return used, inverse.astype(np.int32).reshape(-1)
    present = np.zeros(domain, dtype=bool)
    present[codes] = True
    used = np.flatnonzero(present)
    rank = np.zeros(domain, dtype=np.int32)
    rank[used] = np.arange(len(used), dtype=np.int32)
    return used, rank[codes]


def compact_codes(names: Sequence[str], codes: np.ndarray) -> Tuple[tuple, np.ndarray]:
    """(the names `codes` use, the codes into them): a block's dictionary cut
    down to its own rows."""
    used, inverse = unique_codes(codes, len(names))
    return tuple(names[i] for i in used.tolist()), inverse


def merge_codes(parts: Sequence[Tuple[Sequence[str], np.ndarray]]) -> Tuple[tuple, np.ndarray]:
    """(names, codes) of several blocks -> one dictionary and the blocks'
    codes into it, concatenated."""
    index: Dict[str, int] = {}
    recoded = [_codes(names, index)[codes] if len(names) else EMPTY_CODES
               for names, codes in parts]
    return tuple(index), np.concatenate(recoded)


def name_hashes(names: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hashes of names (models.knowledge_state.user_hash)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(),
                        "little") for name in names), dtype=np.uint64, count=len(names))


def splitmix64(values: np.ndarray) -> np.ndarray:
    """A 64-bit mixing function, elementwise: hashes and pseudo-random keys
    that every worker computes identically."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_pairs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """An order-dependent 64-bit hash of two uint64 columns."""
    return splitmix64(splitmix64(first) ^ second.astype(np.uint64))


def bucket_rows(users: Sequence[str], user_codes: np.ndarray, num_buckets: int):
    """(bucket, its row indices, in order) of rows whose user is
    users[user_codes[row]]: the bucket is user_hash(user) % num_buckets."""
    buckets = (name_hashes(users) % np.uint64(num_buckets)).astype(np.int64)[user_codes]
    order = np.argsort(buckets, kind="stable")
    bounds = np.flatnonzero(np.diff(buckets[order])) + 1
    for part in np.split(order, bounds):
        if len(part):
            yield int(buckets[part[0]]), part


class Columns:
    """A block of columns in __slots__. Pickled as one tuple, with every
    numeric array packed into one bytes object: pickling a numpy array costs
    a few microseconds however small it is, and with thousands of exercises
    the blocks between steps are small and many (packing made their pickling
    2x faster, measured). Arrays come back C-ordered and writable."""

    __slots__ = ()

    def __getstate__(self):
        values, arrays, parts = [], [], []
        for name in self.__slots__:
            value = getattr(self, name)
            if type(value) is np.ndarray and not value.dtype.hasobject:
                data = value.tobytes()
                arrays.append((len(values), value.dtype.str, value.shape))
                parts += [data, bytes(-len(data) % _ALIGNMENT)]
                value = None
            values.append(value)
        return tuple(values), tuple(arrays), b"".join(parts)

    def __setstate__(self, state):
        values, arrays, packed = state
        values, buffer, offset = list(values), bytearray(packed), 0
        for index, dtype, shape in arrays:
            dtype, count = np.dtype(dtype), math.prod(shape)
            values[index] = np.frombuffer(buffer, dtype, count, offset).reshape(shape)
            offset += -(-count * dtype.itemsize // _ALIGNMENT) * _ALIGNMENT
        for name, value in zip(self.__slots__, values):
            setattr(self, name, value)


class LogBatch(Columns):
    """Validated ProblemLogs as columns. `problem_number` is 0 where absent
    (valid numbers are >= 1); the optional int fields are an (n, 3) int64
    array with a presence mask, in OPTIONAL_INT_FIELDS order."""

    __slots__ = ("users", "user", "exercises", "exercise", "problem_types", "problem_type",
                 "problem_number", "time_done", "correct", "optional", "optional_present")

    def __init__(self, users, user, exercises, exercise, problem_types, problem_type,
                 problem_number, time_done, correct, optional, optional_present):
        self.users, self.user = tuple(users), user
        self.exercises, self.exercise = tuple(exercises), exercise
        self.problem_types, self.problem_type = tuple(problem_types), problem_type
        self.problem_number, self.time_done, self.correct = problem_number, time_done, correct
        self.optional, self.optional_present = optional, optional_present

    def __len__(self):
        return len(self.time_done)

    @staticmethod
    def from_logs(logs: Sequence[ProblemLog]) -> "LogBatch":
        n = len(logs)
        if not n:
            return LogBatch.empty()
        users, exercises, types, numbers, times, corrects, *optional = zip(*logs)
        user_index, exercise_index, type_index = {}, {}, {}
        present = np.array([[value is not None for value in column] for column in optional],
                           dtype=bool).T.reshape(n, len(OPTIONAL_INT_FIELDS))
        values = np.array([[value or 0 for value in column] for column in optional],
                          dtype=np.int64).T.reshape(n, len(OPTIONAL_INT_FIELDS))
        batch = LogBatch((), _codes(users, user_index), (), _codes(exercises, exercise_index),
                         (), _codes(types, type_index),
                         np.fromiter((number or 0 for number in numbers), np.int64, n),
                         np.fromiter(times, np.int64, n), np.fromiter(corrects, bool, n),
                         values, present)
        batch.users, batch.exercises, batch.problem_types = (
            tuple(user_index), tuple(exercise_index), tuple(type_index))
        return batch

    @staticmethod
    def empty() -> "LogBatch":
        return LogBatch((), EMPTY_CODES, (), EMPTY_CODES, (), EMPTY_CODES,
                        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool),
                        np.zeros((0, len(OPTIONAL_INT_FIELDS)), np.int64),
                        np.zeros((0, len(OPTIONAL_INT_FIELDS)), bool))

    def take(self, index) -> "LogBatch":
        """Rows `index`, with dictionaries cut down to the names they use."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        columns = {}
        for names, codes in _NAME_COLUMNS:
            columns[names], columns[codes] = compact_codes(getattr(self, names),
                                                           getattr(self, codes)[index])
        return LogBatch(**columns, **{name: getattr(self, name)[index]
                                      for name in _VALUE_COLUMNS})

    @staticmethod
    def concatenate(batches: Sequence["LogBatch"]) -> "LogBatch":
        batches = [batch for batch in batches if len(batch)]
        if not batches:
            return LogBatch.empty()
        if len(batches) == 1:
            return batches[0]
        columns = {}
        for names, codes in _NAME_COLUMNS:
            columns[names], columns[codes] = merge_codes(
                [(getattr(batch, names), getattr(batch, codes)) for batch in batches])
        return LogBatch(**columns, **{name: np.concatenate([getattr(batch, name)
                                                            for batch in batches])
                                      for name in _VALUE_COLUMNS})

    def user_hashes(self) -> np.ndarray:
        """Per row: models.knowledge_state.user_hash of its user."""
        return name_hashes(self.users)[self.user]

    def fingerprints(self) -> np.ndarray:
        """Per row: a 64-bit hash of every field but the user, as read (an
        absent problem_number is 0). Equal logs of a student have equal
        fingerprints, which lets a later run recognise copies of attempts a
        saved state already holds (models.student_state)."""
        fingerprint = name_hashes(self.exercises)[self.exercise]
        columns = [name_hashes(self.problem_types)[self.problem_type], self.problem_number,
                   self.time_done, self.correct, *self.optional.T, *self.optional_present.T]
        for column in columns:
            fingerprint = hash_pairs(fingerprint, column.astype(np.int64).astype(np.uint64))
        return fingerprint

    def by_bucket(self, num_buckets: int) -> Iterable[Tuple[int, "LogBatch"]]:
        """(bucket, its rows): every attempt of a student lands in the bucket
        user_hash(user) % num_buckets, whatever file or batch it came from."""
        for bucket, rows in bucket_rows(self.users, self.user, num_buckets):
            yield bucket, self.take(rows)

    def logs(self, index=None) -> List[ProblemLog]:
        """Rows as ProblemLog objects (dead letters, per-student consumers)."""
        index = np.arange(len(self)) if index is None else np.asarray(index)
        users, exercises, types = self.users, self.exercises, self.problem_types
        optional = self.optional[index].tolist()
        present = self.optional_present[index].tolist()
        return [ProblemLog(users[u], exercises[e], types[t], number or None, time, correct,
                           *(v if p else None for v, p in zip(values, flags)))
                for u, e, t, number, time, correct, values, flags in zip(
                    self.user[index].tolist(), self.exercise[index].tolist(),
                    self.problem_type[index].tolist(), self.problem_number[index].tolist(),
                    self.time_done[index].tolist(), self.correct[index].tolist(),
                    optional, present)]


def _ranks(names: Sequence[str]) -> np.ndarray:
    """rank[code] = position of names[code] in sorted order (Python's string
    order, which the one-at-a-time sessionize uses)."""
    order = sorted(range(len(names)), key=names.__getitem__)
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[order] = np.arange(len(names))
    return ranks


class Sessionized(NamedTuple):
    """A batch of students after sessionize_batch."""
    logs: LogBatch                 # kept rows: students contiguous, each in time order,
                                   # problem_number derived where it was absent
    student_starts: np.ndarray     # row where each student starts (len: students + 1)
    duplicates: int                # exact copies dropped
    conflicting: List[ProblemLog]  # conflicting duplicates removed (each copy once)
    too_many: List[ProblemLog]     # every log of students over max_attempts
    students_over: int             # how many such students
    fingerprints: Optional[np.ndarray] = None  # with a prior state: LogBatch.fingerprints
                                               # of the kept rows, as read
    late: int = 0                  # with a prior state: kept attempts earlier than the
                                   # student's last saved one


def _starts(keys: np.ndarray) -> np.ndarray:
    """Positions where a run of equal consecutive rows of `keys` (n, k) starts."""
    if not len(keys):
        return np.zeros(0, dtype=bool)
    return np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]


def sessionize_batch(batch: LogBatch, max_attempts: int = None, prior=None) -> Sessionized:
    """models.knowledge_state.sessionize_with_conflicts for every student of
    `batch` at once, plus the attempt cap (a student over `max_attempts` is
    returned whole in `too_many`, never truncated).

    `prior` (models.student_state.StudentStates) continues saved students:
    copies of attempts their state holds are duplicates, problem numbers
    count on from the saved attempts, attempts before the student's last
    saved one are counted as late (they are replayed after the state, in
    time order among the new ones)."""
    user_rank = _ranks(batch.users)[batch.user]
    exercise_rank = _ranks(batch.exercises)[batch.exercise]
    order = np.lexsort((batch.time_done, user_rank))
    # Attempts of a student at the same instant are rare: only those segments
    # are sorted by every field (knowledge_state._sort_key's tie-break: exercise,
    # type, correct, then (present, value) of problem_number and each optional
    # field), deduplicated and checked for conflicts.
    tie = ((user_rank[order][1:] == user_rank[order][:-1])
           & (batch.time_done[order][1:] == batch.time_done[order][:-1]))
    duplicates, conflicting = 0, []
    if tie.any():
        in_tie = np.r_[False, tie] | np.r_[tie, False]
        positions = np.flatnonzero(in_tie)
        rows = order[positions]
        segment = np.cumsum(~np.r_[False, tie][positions])
        present = batch.optional_present[rows].astype(np.int64)
        values = np.where(batch.optional_present[rows], batch.optional[rows], 0)
        keys = np.column_stack([segment, exercise_rank[rows],
                                _ranks(batch.problem_types)[batch.problem_type[rows]],
                                batch.correct[rows].astype(np.int64),
                                batch.problem_number[rows],
                                *(column for i in range(present.shape[1])
                                  for column in (present[:, i], values[:, i]))])
        resort = np.lexsort(keys.T[::-1])
        rows, keys = rows[resort], keys[resort]
        order[positions] = rows
        # Exact duplicates: a row equal to the one before it in every field.
        copy = ~_starts(keys)
        duplicates = int(copy.sum())
        # Conflicts: same segment (user, time), exercise and problem number,
        # both answers.
        same = keys[:, [0, 1, 4]]
        sub = np.lexsort(same.T[::-1])
        group = np.cumsum(_starts(same[sub])) - 1
        correct = keys[sub, 3]
        both = ((np.bincount(group, weights=correct) > 0)
                & (np.bincount(group, weights=1 - correct) > 0))
        conflict = np.zeros(len(rows), dtype=bool)
        conflict[sub] = both[group]
        conflicting = batch.logs(rows[conflict & ~copy])
        drop = np.zeros(len(order), dtype=bool)
        drop[positions] = copy | conflict
        order = order[~drop]
    fingerprints, late, saved_attempts = None, np.zeros(len(order), dtype=bool), 0
    if prior is not None:
        fingerprints = batch.fingerprints()[order]
        copy, last_time, saved_attempts = prior.saved(
            batch.user_hashes()[order], name_hashes(batch.exercises)[batch.exercise[order]],
            fingerprints)
        duplicates += int(copy.sum())
        kept = ~copy
        order, fingerprints, saved_attempts = order[kept], fingerprints[kept], saved_attempts[kept]
        late = batch.time_done[order] < last_time[kept]
    user_sorted = user_rank[order]

    logs = batch.take(order)
    absent = logs.problem_number == 0
    if absent.any():
        # The attempt's 1-based position among its student's attempts on the
        # exercise, in time order.
        pair = np.column_stack([user_sorted, exercise_rank[order]])
        by_pair = np.lexsort((np.arange(len(order)), pair[:, 1], pair[:, 0]))
        run_start = np.maximum.accumulate(
            np.where(_starts(pair[by_pair]), np.arange(len(order)), 0))
        position = np.empty(len(order), dtype=np.int64)
        position[by_pair] = np.arange(len(order)) - run_start + 1
        logs.problem_number = np.where(absent, position + saved_attempts, logs.problem_number)

    student_starts = np.r_[np.flatnonzero(_starts(user_sorted[:, None])), len(order)]
    too_many: List[ProblemLog] = []
    students_over = 0
    if max_attempts is not None and len(order):
        lengths = np.diff(student_starts)
        over = lengths > max_attempts
        if over.any():
            students_over = int(over.sum())
            drop = np.repeat(over, lengths)
            too_many = logs.logs(np.flatnonzero(drop))
            logs = logs.take(np.flatnonzero(~drop))
            student_starts = np.r_[0, np.cumsum(lengths[~over])]
            late = late[~drop]
            if fingerprints is not None:
                fingerprints = fingerprints[~drop]
    return Sessionized(logs, student_starts, duplicates, conflicting, too_many, students_over,
                       fingerprints, int(late.sum()))
