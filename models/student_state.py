"""Saved KnowledgeStates: what one run hands the next, so that a nightly run
replays only the new logs and still gives every student the features their
whole history gives (the features of docs/how-it-works.md need only this).

A StudentStates block has one row per (student, exercise) the student has
attempted:

* attempts: how many attempts on the exercise were kept so far (problem
  numbers are derived counting on from it), and correct_attempts: how many
  of them were correct (their sums over the student's rows are the counts
  of --student_features);
* answers: the last WINDOW answers, oldest first;
* recent attempts: the time_done and fingerprint (LogBatch.fingerprints) of
  the attempts less than RECENT_MICROS before the student's latest one: a
  later copy of one of them is a duplicate. Overlapping exports repeat the
  last hours, not months ago, and a fingerprint per answer would make up most
  of the snapshot;
* first attempts: the (problem_type, correct) of every problem_number == 1
  attempt on the exercise, with its position in the student's sequence of
  such attempts: r is the sum of their random components, in that order;
* last_time: the student's latest time_done (the same on each of its rows).

join() lines a state up with a sessionized LogBatch of the same students:
replay_batch() starts every student from it, and advance() gives the state
after the batch.
"""

from typing import Sequence

import numpy as np

from models.knowledge_state import (WINDOW, ComponentCache, ExerciseState, KnowledgeState,
                                    PriorEvents, ragged_take)
from models.log_batch import (Columns, LogBatch, bucket_rows, compact_codes, hash_pairs,
                              merge_codes, name_hashes)

# Bumped whenever the feature contract changes: a snapshot from another
# version would give other features than a replay of the whole history.
CONTRACT_VERSION = 2  # 2: correct_attempts
RECENT_MICROS = 86_400_000_000  # one day

_NAMES = ("users", "exercises", "problem_types")


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, missing):
    """values[i] where keys[i] == wanted (keys unique), else `missing`."""
    if not len(keys):
        return np.full(len(wanted), missing, dtype=values.dtype)
    order = np.argsort(keys)
    position = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    found = keys[order][position] == wanted
    return np.where(found, values[order][position], missing)


class StudentStates(Columns):
    """Saved states of a set of students, as columns (see the module docstring)."""

    __slots__ = ("users", "user", "exercises", "exercise", "problem_types", "attempts",
                 "last_time", "answer_indptr", "answers", "recent_indptr", "recent_times",
                 "recent_fingerprints", "update_indptr", "update_type", "update_correct",
                 "update_order", "correct_attempts")

    def __init__(self, users, user, exercises, exercise, problem_types, attempts, last_time,
                 answer_indptr, answers, recent_indptr, recent_times, recent_fingerprints,
                 update_indptr, update_type, update_correct, update_order, correct_attempts):
        self.users, self.user = tuple(users), user              # int32 codes
        self.exercises, self.exercise = tuple(exercises), exercise
        self.problem_types = tuple(problem_types)
        self.attempts = attempts              # int64
        self.last_time = last_time            # int64 epoch µs, the student's latest
        self.answer_indptr = answer_indptr    # int64 (rows + 1)
        self.answers = answers                # bool, oldest first
        self.recent_indptr = recent_indptr    # int64 (rows + 1)
        self.recent_times = recent_times      # int64 epoch µs
        self.recent_fingerprints = recent_fingerprints  # uint64
        self.update_indptr = update_indptr    # int64 (rows + 1)
        self.update_type = update_type        # int32 codes into problem_types
        self.update_correct = update_correct  # bool
        self.update_order = update_order      # int64 position among the student's updates
        self.correct_attempts = correct_attempts  # int64, of `attempts`

    def __len__(self):
        return len(self.attempts)

    @staticmethod
    def empty() -> "StudentStates":
        nothing = np.zeros(0, np.int64)
        return StudentStates((), np.zeros(0, np.int32), (), np.zeros(0, np.int32), (),
                             nothing, nothing, np.zeros(1, np.int64), np.zeros(0, bool),
                             np.zeros(1, np.int64), nothing, np.zeros(0, np.uint64),
                             np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, bool),
                             nothing, nothing)

    @property
    def num_students(self) -> int:
        return len(np.unique(self.user))

    def take(self, index) -> "StudentStates":
        """Rows `index`, with dictionaries cut down to the names they use."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        answer_indptr, answer_at = ragged_take(self.answer_indptr, index)
        recent_indptr, recent_at = ragged_take(self.recent_indptr, index)
        update_indptr, update_at = ragged_take(self.update_indptr, index)
        users, user = compact_codes(self.users, self.user[index])
        exercises, exercise = compact_codes(self.exercises, self.exercise[index])
        types, update_type = compact_codes(self.problem_types, self.update_type[update_at])
        return StudentStates(users, user, exercises, exercise, types, self.attempts[index],
                             self.last_time[index], answer_indptr, self.answers[answer_at],
                             recent_indptr, self.recent_times[recent_at],
                             self.recent_fingerprints[recent_at], update_indptr, update_type,
                             self.update_correct[update_at], self.update_order[update_at],
                             self.correct_attempts[index])

    @staticmethod
    def concatenate(blocks: Sequence["StudentStates"]) -> "StudentStates":
        blocks = [block for block in blocks if len(block)]
        if len(blocks) <= 1:
            return blocks[0] if blocks else StudentStates.empty()
        codes = {}
        for names, column in (("users", "user"), ("exercises", "exercise"),
                              ("problem_types", "update_type")):
            codes[names], codes[column] = merge_codes(
                [(getattr(block, names), getattr(block, column)) for block in blocks])

        def indptr(name):
            lengths = np.concatenate([np.diff(getattr(block, name)) for block in blocks])
            return np.r_[0, np.cumsum(lengths)].astype(np.int64)

        def joined(name):
            return np.concatenate([getattr(block, name) for block in blocks])
        return StudentStates(codes["users"], codes["user"], codes["exercises"],
                             codes["exercise"], codes["problem_types"], joined("attempts"),
                             joined("last_time"), indptr("answer_indptr"), joined("answers"),
                             indptr("recent_indptr"), joined("recent_times"),
                             joined("recent_fingerprints"), indptr("update_indptr"),
                             codes["update_type"], joined("update_correct"),
                             joined("update_order"), joined("correct_attempts"))

    def forget_recent_before(self, micros: int) -> "StudentStates":
        """The same states without the recent attempts done before `micros`.
        A run that read logs only up to `micros` (its window's end) is
        continued by runs that read only logs from there on, so no later copy
        can match those fingerprints: kept, they would be most of the snapshot."""
        keep = self.recent_times >= micros
        if keep.all():
            return self
        row_of_recent = np.repeat(np.arange(len(self)), np.diff(self.recent_indptr))
        kept_per_row = np.bincount(row_of_recent[keep], minlength=len(self))
        return StudentStates(self.users, self.user, self.exercises, self.exercise,
                             self.problem_types, self.attempts, self.last_time,
                             self.answer_indptr, self.answers,
                             np.r_[0, np.cumsum(kept_per_row)].astype(np.int64),
                             self.recent_times[keep], self.recent_fingerprints[keep],
                             self.update_indptr, self.update_type, self.update_correct,
                             self.update_order, self.correct_attempts)

    def user_hashes(self) -> np.ndarray:
        return name_hashes(self.users)[self.user]

    def of_user(self, user: str) -> "StudentStates":
        """The rows of one student (none if the snapshot does not have them)."""
        code = self.users.index(user) if user in self.users else -1
        return self.take(self.user == code)

    def by_bucket(self, num_buckets: int):
        """(bucket, its rows), buckets as LogBatch.by_bucket forms them."""
        for bucket, rows in bucket_rows(self.users, self.user, num_buckets):
            yield bucket, self.take(rows)

    def saved(self, user_hashes: np.ndarray, exercise_hashes: np.ndarray,
              fingerprints: np.ndarray):
        """What the state holds for each of some attempts, by hashed names (for
        sessionize_batch): (whether it holds a copy of the attempt: the same
        student and fingerprint, the student's last saved time_done (int64 min
        if none), the student's saved attempts on the exercise)."""
        owners = self.user_hashes()
        recent_owner = np.repeat(owners, np.diff(self.recent_indptr))
        copy = np.isin(hash_pairs(user_hashes, fingerprints),
                       hash_pairs(recent_owner, self.recent_fingerprints))
        students, first = np.unique(owners, return_index=True)
        last_time = _lookup(students, self.last_time[first], user_hashes,
                            np.iinfo(np.int64).min)
        pairs = hash_pairs(owners, name_hashes(self.exercises)[self.exercise])
        attempts = _lookup(pairs, self.attempts, hash_pairs(user_hashes, exercise_hashes), 0)
        return copy, last_time, attempts


def knowledge_state(saved: StudentStates, components: ComponentCache,
                    student_features: bool = False) -> KnowledgeState:
    """The specification-shaped KnowledgeState of one student's saved rows
    (serving starts from it; its r adds the components in their saved order)."""
    if len(np.unique(saved.user)) > 1:
        raise ValueError("knowledge_state takes the rows of one student")
    state = KnowledgeState(components, student_features)
    if state.totals is not None:
        state.totals.done = int(saved.attempts.sum())
        state.totals.correct = int(saved.correct_attempts.sum())
    updates = []
    for row in range(len(saved)):
        exercise = saved.exercises[saved.exercise[row]]
        window = state.exercises.setdefault(exercise, ExerciseState())
        start, stop = saved.answer_indptr[row], saved.answer_indptr[row + 1]
        window.answers.extend(int(answer) for answer in saved.answers[start:stop])
        for update in range(saved.update_indptr[row], saved.update_indptr[row + 1]):
            updates.append((int(saved.update_order[update]), exercise,
                            saved.problem_types[saved.update_type[update]],
                            bool(saved.update_correct[update])))
    for _, *key in sorted(updates):
        state.random_features = state.random_features + components(tuple(key))
    return state


def _extend(names: tuple, more: Sequence[str]):
    """(names + those of `more` not in it, codes of `more` in the result)."""
    index = {name: code for code, name in enumerate(names)}
    codes = np.array([index.setdefault(name, len(index)) for name in more], dtype=np.int64)
    return tuple(index), codes


class Joined:
    """A saved state lined up with a sessionized batch: the state's students
    and names in the batch's codes. Students only the state has come after
    the batch's (index >= the batch's number of students)."""

    def __init__(self, prior: StudentStates, batch: LogBatch, student_starts: np.ndarray):
        self.batch, self.student_starts = batch, student_starts
        self.num_batch_students = len(student_starts) - 1
        batch_users = [batch.users[code] for code in batch.user[student_starts[:-1]].tolist()]
        users, user_of_state_code = _extend(tuple(batch_users), prior.users)
        self.users = users
        self.prior = prior
        self.student = user_of_state_code[prior.user] if len(prior) else np.zeros(0, np.int64)
        self.exercises, exercise_codes = _extend(batch.exercises, prior.exercises)
        self.exercise = exercise_codes[prior.exercise] if len(prior) else np.zeros(0, np.int64)
        self.problem_types, type_codes = _extend(batch.problem_types, prior.problem_types)
        self.update_type = (type_codes[prior.update_type] if len(prior.update_type)
                            else np.zeros(0, np.int64))

    def events(self) -> PriorEvents:
        """The saved answers and updates of the batch's students, for replay_batch."""
        prior = self.prior
        answers_per_row = np.diff(prior.answer_indptr)
        updates_per_row = np.diff(prior.update_indptr)
        answer_student = np.repeat(self.student, answers_per_row)
        update_student = np.repeat(self.student, updates_per_row)
        in_answers = answer_student < self.num_batch_students
        in_updates = update_student < self.num_batch_students
        in_batch = self.student < self.num_batch_students

        def per_student(counts):
            return np.bincount(self.student[in_batch], weights=counts[in_batch],
                               minlength=self.num_batch_students).astype(np.int64)
        return PriorEvents(
            exercises=self.exercises, problem_types=self.problem_types,
            answer_student=answer_student[in_answers],
            answer_exercise=np.repeat(self.exercise, answers_per_row)[in_answers],
            answers=prior.answers[in_answers],
            update_student=update_student[in_updates],
            update_exercise=np.repeat(self.exercise, updates_per_row)[in_updates],
            update_type=self.update_type[in_updates],
            update_correct=prior.update_correct[in_updates],
            update_order=prior.update_order[in_updates],
            student_done=per_student(prior.attempts),
            student_correct=per_student(prior.correct_attempts))

    def advance(self, fingerprints: np.ndarray) -> StudentStates:
        """The state of every student (the batch's and the state's) after the
        batch, whose rows have `fingerprints` (as read)."""
        prior, batch = self.prior, self.batch
        lengths = np.diff(self.student_starts)
        student_of_row = np.repeat(np.arange(self.num_batch_students), lengths)
        num_exercises = max(len(self.exercises), 1)
        saved_rows = len(prior)

        # Rows of the result: (student, exercise) pairs of the state and the batch.
        pair = np.r_[self.student * num_exercises + self.exercise,
                     student_of_row * num_exercises + batch.exercise]
        pairs, pair_of = np.unique(pair, return_inverse=True)
        pair_of = pair_of.reshape(-1)
        prior_pair, new_pair = pair_of[:saved_rows], pair_of[saved_rows:]
        attempts = np.bincount(prior_pair, weights=prior.attempts, minlength=len(pairs))
        attempts += np.bincount(new_pair, minlength=len(pairs))
        correct_attempts = (np.bincount(prior_pair, weights=prior.correct_attempts,
                                        minlength=len(pairs))
                            + np.bincount(new_pair, weights=batch.correct, minlength=len(pairs)))

        # Answers: the saved ones, then the batch's, the last WINDOW per pair.
        answers_per_row = np.diff(prior.answer_indptr)
        answer_pair = np.r_[np.repeat(prior_pair, answers_per_row), new_pair]
        order = np.argsort(answer_pair, kind="stable")  # saved first, then time order
        sorted_pair = answer_pair[order]
        ends = np.searchsorted(sorted_pair, sorted_pair, side="right")
        keep = order[ends - np.arange(len(order)) <= WINDOW]
        answers = np.r_[prior.answers, batch.correct][keep]
        answer_indptr = np.r_[0, np.cumsum(np.bincount(answer_pair[keep],
                                                       minlength=len(pairs)))]

        # First attempts: the saved ones, then the batch's in time order.
        updates_per_row = np.diff(prior.update_indptr)
        update_student = np.repeat(self.student, updates_per_row)
        saved_updates = np.bincount(update_student, minlength=len(self.users))
        new_rows = np.flatnonzero(batch.problem_number == 1)
        new_student = student_of_row[new_rows]
        first_new = np.searchsorted(new_rows, self.student_starts[:-1])
        new_order = (saved_updates[new_student] + np.arange(len(new_rows))
                     - first_new[new_student])
        update_pair = np.r_[np.repeat(prior_pair, updates_per_row), new_pair[new_rows]]
        update_order = np.r_[prior.update_order, new_order]
        order = np.lexsort((update_order, update_pair))
        update_indptr = np.r_[0, np.cumsum(np.bincount(update_pair, minlength=len(pairs)))]

        last_time = np.full(len(self.users), np.iinfo(np.int64).min)
        np.maximum.at(last_time, self.student, prior.last_time)
        np.maximum.at(last_time, student_of_row, batch.time_done)
        student = pairs // num_exercises

        # Recent attempts: the saved and new ones less than RECENT_MICROS
        # before the student's latest attempt.
        recent_pair = np.r_[np.repeat(prior_pair, np.diff(prior.recent_indptr)), new_pair]
        recent_times = np.r_[prior.recent_times, batch.time_done]
        recent = np.flatnonzero(recent_times > last_time[student[recent_pair]] - RECENT_MICROS)
        recent = recent[np.argsort(recent_pair[recent], kind="stable")]
        recent_indptr = np.r_[0, np.cumsum(np.bincount(recent_pair[recent],
                                                       minlength=len(pairs)))]
        recent_fingerprints = np.r_[prior.recent_fingerprints,
                                    fingerprints.astype(np.uint64)][recent]
        return StudentStates(
            self.users, student.astype(np.int32), self.exercises,
            (pairs % num_exercises).astype(np.int32), self.problem_types,
            attempts.astype(np.int64), last_time[student], answer_indptr.astype(np.int64),
            answers, recent_indptr.astype(np.int64), recent_times[recent], recent_fingerprints,
            update_indptr.astype(np.int64),
            np.r_[self.update_type, batch.problem_type[new_rows]][order].astype(np.int32),
            np.r_[prior.update_correct, batch.correct[new_rows]][order],
            update_order[order].astype(np.int64),
            correct_attempts.astype(np.int64)).take(np.arange(len(pairs)))


# The snapshot's file schema: one row per (student, exercise), as in memory
# but with names instead of codes, readable by any Parquet tool.
def arrow_schema():
    import pyarrow as pa
    return pa.schema([
        ("user", pa.string()), ("exercise", pa.string()), ("attempts", pa.int64()),
        ("correct_attempts", pa.int64()), ("last_time_done", pa.timestamp("us", tz="UTC")),
        ("answers", pa.list_(pa.bool_())),
        ("recent_attempts", pa.list_(pa.struct([("time_done", pa.timestamp("us", tz="UTC")),
                                                ("fingerprint", pa.uint64())]))),
        ("first_attempts", pa.list_(pa.struct([("problem_type", pa.string()),
                                                ("correct", pa.bool_()),
                                                ("order", pa.int64())])))])


def to_arrow(states: StudentStates):
    """The states as a pyarrow Table of arrow_schema()."""
    import pyarrow as pa

    def names(dictionary, codes):
        return pa.array(np.array(dictionary, dtype=object)[codes] if len(codes) else [],
                        type=pa.string())

    def ragged(indptr, values):
        return pa.ListArray.from_arrays(pa.array(indptr.astype(np.int32)), values)

    def timestamps(values):
        return pa.array(values, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    first_attempts = pa.StructArray.from_arrays(
        [names(states.problem_types, states.update_type),
         pa.array(states.update_correct, type=pa.bool_()),
         pa.array(states.update_order, type=pa.int64())],
        names=["problem_type", "correct", "order"])
    return pa.Table.from_arrays(
        [names(states.users, states.user), names(states.exercises, states.exercise),
         pa.array(states.attempts, type=pa.int64()),
         pa.array(states.correct_attempts, type=pa.int64()),
         timestamps(states.last_time),
         ragged(states.answer_indptr, pa.array(states.answers, type=pa.bool_())),
         ragged(states.recent_indptr, pa.StructArray.from_arrays(
             [timestamps(states.recent_times),
              pa.array(states.recent_fingerprints, type=pa.uint64())],
             names=["time_done", "fingerprint"])),
         ragged(states.update_indptr, first_attempts)],
        schema=arrow_schema())


def from_arrow(table) -> StudentStates:
    """StudentStates of a Table with arrow_schema(); ValueError for any other."""
    import pyarrow as pa
    expected = arrow_schema()
    if not table.schema.equals(expected):
        raise ValueError(f"not a state snapshot: its columns are {table.schema}, "
                         f"expected {expected}")
    nulls = [name for name in expected.names if table.column(name).null_count]
    if nulls:
        raise ValueError(f"damaged state snapshot: nulls in {', '.join(nulls)}")
    table = table.combine_chunks()

    def column(name):
        chunks = table.column(name).chunks
        return chunks[0] if chunks else pa.array([], type=expected.field(name).type)

    def codes(name):
        encoded = column(name).dictionary_encode()
        return (encoded.dictionary.to_pylist(),
                encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32))

    def ragged(name):
        values = column(name)
        offsets = values.offsets.to_numpy().astype(np.int64)
        return offsets - offsets[0], values.flatten()
    users, user = codes("user")
    exercises, exercise = codes("exercise")
    answer_indptr, answers = ragged("answers")
    recent_indptr, recent = ragged("recent_attempts")
    recent_times, recent_fingerprints = recent.flatten()
    update_indptr, updates = ragged("first_attempts")
    update_type, update_correct, update_order = updates.flatten()
    types = update_type.dictionary_encode()
    if any(values.null_count for values in (answers, recent_times, recent_fingerprints,
                                            update_type, update_correct, update_order)):
        raise ValueError("damaged state snapshot: nulls inside its lists")
    if np.any(np.diff(answer_indptr) > WINDOW):
        raise ValueError(f"damaged state snapshot: more than {WINDOW} answers in a row")
    return StudentStates(
        users, user, exercises, exercise, types.dictionary.to_pylist(),
        column("attempts").to_numpy().astype(np.int64),
        column("last_time_done").cast(pa.int64()).to_numpy().astype(np.int64),
        answer_indptr, answers.to_numpy(zero_copy_only=False).astype(bool),
        recent_indptr, recent_times.cast(pa.int64()).to_numpy().astype(np.int64),
        recent_fingerprints.to_numpy().astype(np.uint64), update_indptr,
        types.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        update_correct.to_numpy(zero_copy_only=False).astype(bool),
        update_order.to_numpy().astype(np.int64),
        column("correct_attempts").to_numpy().astype(np.int64))
