"""Sparse binary features of the Sibyl-style model, one student at a time.

For every attempt of a sessionized student (models.knowledge_state.sessionize:
time order, deterministic ties) student_features() returns, per template (a
feature *column*), the list of feature values active for that attempt. Like the
knowledge-model replay, everything is computed *before* the attempt updates the
student's state, so no attempt ever sees its own label.

Templates (the names users pass to --templates) and their values, for an attempt
on exercise E with problem type T:

==========================  ===================================================
exercise                    ["E"]
exercise_x_problem_type     ["E|T"]  (a missing problem type is "", so "E|")
exercise_x_streak           ["E|streak=B"]: B = streak_bucket(trailing run of
                            correct answers on E so far)
exercise_x_attempts         ["E|done=B"]: B = attempts_bucket(earlier attempts
                            on E, counted as logs, not from problem_number)
exercise_x_prior_outcome    ["E|X=correct" or "E|X=wrong" for every OTHER
                            exercise X the student attempted earlier, in order
                            of X's first attempt; the outcome is that of the
                            FIRST attempt on X]  (possibly empty)
exercise_x_days_since_last  ["E|days=B"]: B = days_bucket(microseconds since the
                            student's previous attempt on E, None if none)
student_attempts            ["done=B"]: B = student_attempts_bucket(the
                            student's earlier attempts over ALL exercises)
student_rate                ["rate=B"]: B = rate_bucket(earlier correct answers,
                            earlier attempts), all exercises
exercise_x_student_rate     ["E|rate=B"]: the same B, crossed with E
==========================  ===================================================

The last three (STUDENT_TEMPLATES) carry cross-exercise signal, like the
knowledge model's --student_features; they are not in the default TEMPLATES
(runs without --templates train what they always did) but are in
ALL_TEMPLATES, which a store holds and --templates may name.

Bucket edges (lower bound inclusive, upper bound exclusive):

* streak:   0 | 1 | 2 | 3-4 | 5-9 | 10+
* attempts: 0 | 1 | 2 | 3-4 | 5-9 | 10-19 | 20+
* days:     never | <1 | 1-2 | 3-6 | 7-29 | 30+ where, with D = 86_400_000_000
  microseconds (one day) and d the exact integer gap in microseconds:
  "<1" is 0 <= d < 1*D, "1-2" is 1*D <= d < 3*D, "3-6" is 3*D <= d < 7*D,
  "7-29" is 7*D <= d < 30*D, "30+" is d >= 30*D.  No float arithmetic: a gap
  of 3*D - 1 microseconds is "1-2", 3*D is "3-6".
* student attempts: 0 | 1-4 | 5-9 | 10-19 | 20-49 | 50-99 | 100-199 | 200+
* rate: the smoothed rate r = (c + 1) / (n + 2) of c correct answers in n
  earlier attempts, in percent: <30 | 30-49 | 50-59 | 60-69 | 70-79 | 80-89 |
  90+, where r is in the bucket starting at P percent iff 100*(c+1) >= P*(n+2)
  (integers only): c=4 of n=8 is exactly 50% -> "50-59", c=3 of n=8 is "30-49".
  A student with no earlier attempt has r = 1/2, "50-59".

Inside the composite values, exercise and problem-type names are escaped
(escape_name: "\\" -> "\\\\", "|" -> "\\|", "=" -> "\\="), so a value names one
(exercise, value) pair whatever characters the names hold: exercise "col|x"
with type "y" is "col\\|x|y", exercise "col" with type "x|y" is "col|x\\|y".
Names without those characters read as they are.

Hot path: student_features is one plain Python loop over the attempts with a
small list of state per exercise (no numpy, no helper calls per attempt); the
bucket helpers below are the documented reference and share their lookup
tables with the loop.
"""

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from models.problem_log import ProblemLog

TEMPLATES = (
    "exercise",
    "exercise_x_problem_type",
    "exercise_x_streak",
    "exercise_x_attempts",
    "exercise_x_prior_outcome",
    "exercise_x_days_since_last",
)
STUDENT_TEMPLATES = ("student_attempts", "student_rate", "exercise_x_student_rate")
ALL_TEMPLATES = TEMPLATES + STUDENT_TEMPLATES

DAY_MICROS = 86_400_000_000
SEPARATOR = "|"
CORRECT_OUTCOME = "correct"
WRONG_OUTCOME = "wrong"

STREAK_BUCKETS = ("0", "1", "2", "3-4", "5-9", "10+")
ATTEMPTS_BUCKETS = ("0", "1", "2", "3-4", "5-9", "10-19", "20+")
DAYS_BUCKETS = ("never", "<1", "1-2", "3-6", "7-29", "30+")
STUDENT_ATTEMPTS_BUCKETS = ("0", "1-4", "5-9", "10-19", "20-49", "50-99", "100-199", "200+")
RATE_BUCKETS = ("<30", "30-49", "50-59", "60-69", "70-79", "80-89", "90+")

# Label for every count below the open-ended last bucket; counts >= len(table)
# take the last bucket.
_STREAK_TABLE = ("0", "1", "2", "3-4", "3-4") + ("5-9",) * 5
_ATTEMPTS_TABLE = ("0", "1", "2", "3-4", "3-4") + ("5-9",) * 5 + ("10-19",) * 10
_STREAK_TOP = STREAK_BUCKETS[-1]
_ATTEMPTS_TOP = ATTEMPTS_BUCKETS[-1]
_STUDENT_ATTEMPTS_TABLE = (("0",) + ("1-4",) * 4 + ("5-9",) * 5 + ("10-19",) * 10
                           + ("20-49",) * 30 + ("50-99",) * 50 + ("100-199",) * 100)
_STUDENT_ATTEMPTS_TOP = STUDENT_ATTEMPTS_BUCKETS[-1]
# rate bucket i+1 starts at _RATE_EDGES[i] percent.
_RATE_EDGES = (30, 50, 60, 70, 80, 90)
# days bucket i+1 starts at _DAYS_EDGES[i] whole days (in microseconds).
_DAYS_EDGES = tuple(days * DAY_MICROS for days in (1, 3, 7, 30))


def escape_name(name: str) -> str:
    """A name as it appears inside a composite feature value (see above)."""
    if "\\" in name or "|" in name or "=" in name:
        return name.replace("\\", "\\\\").replace("|", "\\|").replace("=", "\\=")
    return name


def streak_bucket(streak: int) -> str:
    """Trailing run of correct answers -> '0', '1', '2', '3-4', '5-9' or '10+'."""
    if streak < 0:
        raise ValueError(f"streak must be >= 0, got {streak}")
    return _STREAK_TABLE[streak] if streak < len(_STREAK_TABLE) else _STREAK_TOP


def attempts_bucket(attempts: int) -> str:
    """Earlier attempts on the exercise -> '0', '1', '2', '3-4', '5-9', '10-19'
    or '20+'."""
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    return _ATTEMPTS_TABLE[attempts] if attempts < len(_ATTEMPTS_TABLE) else _ATTEMPTS_TOP


def days_bucket(gap_micros: Optional[int]) -> str:
    """Microseconds since the previous attempt on the exercise (None: there was
    none) -> 'never', '<1', '1-2', '3-6', '7-29' or '30+' days; see the module
    docstring for the exact edges."""
    if gap_micros is None:
        return "never"
    if gap_micros < 0:
        raise ValueError(f"gap must be >= 0 microseconds, got {gap_micros}")
    one, three, seven, thirty = _DAYS_EDGES
    if gap_micros < one:
        return "<1"
    if gap_micros < three:
        return "1-2"
    if gap_micros < seven:
        return "3-6"
    if gap_micros < thirty:
        return "7-29"
    return "30+"


def student_attempts_bucket(attempts: int) -> str:
    """Earlier attempts over all exercises -> '0', '1-4', '5-9', '10-19',
    '20-49', '50-99', '100-199' or '200+'."""
    if attempts < 0:
        raise ValueError(f"attempts must be >= 0, got {attempts}")
    if attempts < len(_STUDENT_ATTEMPTS_TABLE):
        return _STUDENT_ATTEMPTS_TABLE[attempts]
    return _STUDENT_ATTEMPTS_TOP


def rate_bucket(correct: int, attempts: int) -> str:
    """Smoothed correct rate (correct+1)/(attempts+2) -> one of RATE_BUCKETS,
    compared in integers (see the module docstring)."""
    if not 0 <= correct <= attempts:
        raise ValueError(f"need 0 <= correct <= attempts, got {correct} of {attempts}")
    scaled, denominator = 100 * (correct + 1), attempts + 2
    bucket = 0
    for edge in _RATE_EDGES:
        if scaled < edge * denominator:
            break
        bucket += 1
    return RATE_BUCKETS[bucket]


def validate_templates(templates: Iterable[str]) -> Tuple[str, ...]:
    """The requested template names, in the order given, duplicates dropped;
    ValueError naming the valid ones if any is unknown or none is given."""
    if isinstance(templates, str):
        raise TypeError("templates must be a sequence of names; use parse_templates "
                        "for comma-separated text")
    chosen = tuple(dict.fromkeys(templates))
    unknown = [name for name in chosen if name not in ALL_TEMPLATES]
    if unknown:
        raise ValueError(f"unknown template(s) {', '.join(map(repr, unknown))}; "
                         f"templates are {', '.join(ALL_TEMPLATES)}")
    if not chosen:
        raise ValueError(f"no templates given; templates are {', '.join(ALL_TEMPLATES)}")
    return chosen


def parse_templates(spec: str) -> Tuple[str, ...]:
    """'exercise,exercise_x_streak' (a --templates value) -> validated names."""
    return validate_templates(
        part.strip() for part in (spec or "").split(",") if part.strip())


def student_features(logs: Sequence[ProblemLog],
                     templates: Sequence[str] = TEMPLATES) -> List[Dict[str, List[str]]]:
    """One dict per attempt, in the order of `logs` (one sessionized student:
    time-ordered), mapping each requested template to its list of values, all
    computed from the attempts before this one. Every requested template is a
    key (in the order requested); a list may be empty. ValueError if `logs` is
    not in time order or `templates` names an unknown template."""
    chosen = templates if templates is TEMPLATES else validate_templates(templates)
    want_exercise = "exercise" in chosen
    want_type = "exercise_x_problem_type" in chosen
    want_streak = "exercise_x_streak" in chosen
    want_done = "exercise_x_attempts" in chosen
    want_prior = "exercise_x_prior_outcome" in chosen
    want_days = "exercise_x_days_since_last" in chosen
    want_student_done = "student_attempts" in chosen
    want_student_rate = "student_rate" in chosen
    want_exercise_rate = "exercise_x_student_rate" in chosen
    # Keys in the requested order: fill a template dict, copy it per attempt.
    blank = dict.fromkeys(chosen)

    streak_labels = tuple("streak=" + label for label in _STREAK_TABLE)
    streak_top = "streak=" + _STREAK_TOP
    n_streak = len(streak_labels)
    done_labels = tuple("done=" + label for label in _ATTEMPTS_TABLE)
    done_top = "done=" + _ATTEMPTS_TOP
    n_done = len(done_labels)
    correct_suffix = "=" + CORRECT_OUTCOME
    wrong_suffix = "=" + WRONG_OUTCOME
    student_done_labels = tuple("done=" + label for label in _STUDENT_ATTEMPTS_TABLE)
    student_done_top = "done=" + _STUDENT_ATTEMPTS_TOP
    n_student_done = len(student_done_labels)
    rate_labels = tuple("rate=" + label for label in RATE_BUCKETS)
    rate_edges = _RATE_EDGES

    # Per exercise: [prefix "E|", streak, attempts, last time_done,
    #                prior-outcome values for E so far, priors covered by them].
    states: Dict[str, list] = {}
    prior_exercises: List[str] = []   # in order of first attempt
    prior_suffixes: List[str] = []    # "X=correct" / "X=wrong", first outcome
    out: List[Dict[str, List[str]]] = []
    previous_time = None
    total_done = total_correct = 0    # over all exercises, before this attempt
    want_rate = want_student_rate or want_exercise_rate
    rate_label = "rate=" + rate_bucket(0, 0)
    for log in logs:
        exercise = log.exercise
        time_done = log.time_done
        if previous_time is not None and time_done < previous_time:
            raise ValueError("logs are not in time order (sessionize them first): "
                             f"{time_done} after {previous_time}")
        previous_time = time_done
        state = states.get(exercise)
        if state is None:
            state = states[exercise] = [escape_name(exercise) + SEPARATOR, 0, 0, None, [], 0]
        prefix, streak, done, last_time, priors, covered = state

        row = blank.copy()
        if want_exercise:
            row["exercise"] = [exercise]
        if want_type:
            row["exercise_x_problem_type"] = [prefix + escape_name(log.problem_type)]
        if want_streak:
            row["exercise_x_streak"] = [prefix + (
                streak_labels[streak] if streak < n_streak else streak_top)]
        if want_done:
            row["exercise_x_attempts"] = [prefix + (
                done_labels[done] if done < n_done else done_top)]
        if want_prior:
            total = len(prior_exercises)
            if covered < total:
                for i in range(covered, total):
                    if prior_exercises[i] != exercise:
                        priors.append(prefix + prior_suffixes[i])
                state[5] = total
            row["exercise_x_prior_outcome"] = priors[:]
        if want_days:
            row["exercise_x_days_since_last"] = [prefix + "days=" + days_bucket(
                None if last_time is None else time_done - last_time)]
        if want_student_done:
            row["student_attempts"] = [student_done_labels[total_done]
                                       if total_done < n_student_done else student_done_top]
        if want_student_rate:
            row["student_rate"] = [rate_label]
        if want_exercise_rate:
            row["exercise_x_student_rate"] = [prefix + rate_label]
        out.append(row)

        # Only now does the attempt's label enter the state.
        correct = log.correct
        if done == 0:
            prior_exercises.append(exercise)
            prior_suffixes.append(escape_name(exercise)
                                  + (correct_suffix if correct else wrong_suffix))
        state[1] = streak + 1 if correct else 0
        state[2] = done + 1
        state[3] = time_done
        total_done += 1
        if correct:
            total_correct += 1
        if want_rate:   # rate_bucket, inlined
            scaled, denominator, bucket = 100 * (total_correct + 1), total_done + 2, 0
            for edge in rate_edges:
                if scaled < edge * denominator:
                    break
                bucket += 1
            rate_label = rate_labels[bucket]
    return out
