"""Builders of damaged ProblemLog inputs, each with what the input contract says
must happen to every physical record in it.

Every builder writes files around (or next to) a block of GOOD records and
returns `Case`s whose `Expected` is written by hand, line by line, from how the
file was built (never from what a pipeline reports): each line is declared as
trained on, an exact duplicate, dead-lettered with a reason, or unreadable.

The good block: 6 students x 2 exercises (ex_a, ex_b) x 6 attempts = 72 records
with both outcomes on every exercise, so with `--min_samples 5` at least one
exercise is fitted and a run succeeds whatever else is in the input.

Every hostile record has a user of its own unless the case is about two records
meeting (duplicates, whitespace variants, integer ids), so cases do not
interact and each can be checked on its own.
"""

import collections
import csv
import dataclasses
import datetime
import io
import itertools
import json
import os

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from fastavro.write import Writer

from models.problem_log import PROBLEM_LOG_AVRO_SCHEMA

SEED = 0   # --seed the tests train with
D = 4      # --num_random_features the tests train with (small: fast, readable rows)
UTC = datetime.timezone.utc
BASE = datetime.datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
CSV_HEADER = ["user", "exercise", "problem_type", "problem_number", "time_done", "correct"]
DROP = object()    # rec(field=DROP): leave the field out of the record
BOM = "\ufeff"

# Names that differ only in where a separator sits: a joined-text key would
# make each pair collide. (exercise, problem_type) pairs.
UNIT_SEPARATOR_PAIR = (("a\x1fb", "c"), ("a", "b\x1fc"))
PIPE_PAIR = (("col|x", "y"), ("col", "x|y"))
ODD_NAMES = (('k=v,w"q\tz\nn', 't\tab"'), ("e=1|2", "x,y"), ("back\\slash", "p=|q"))


def iso(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def micros(moment: datetime.datetime) -> int:
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


@dataclasses.dataclass
class Expected:
    """What the contract says a run over some files must report. Counters are
    by reason / field / user; `*_by_file` by file base name."""

    physical_records: int = 0
    records_read: int = 0
    records_unreadable: int = 0
    unreadable_stretches: int = 0
    duplicates_dropped: int = 0
    dead_lettered: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    optional_fields_nulled: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    trained: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    exercises: set = dataclasses.field(default_factory=set)
    pairs: set = dataclasses.field(default_factory=set)   # (exercise, problem_type) trained
    users: set = dataclasses.field(default_factory=set)   # every (normalized) user declared
    read_dead_by_file: dict[str, collections.Counter] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    stretches_by_file: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)
    sessionize_dead: collections.Counter = dataclasses.field(
        default_factory=collections.Counter)               # (user, reason)
    bytes_unreadable_positive: bool = False

    @property
    def records_trained_on(self) -> int:
        return sum(self.trained.values())

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())

    def __add__(self, other: "Expected") -> "Expected":
        total = Expected()
        for field in dataclasses.fields(Expected):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if isinstance(mine, bool):
                value = mine or theirs
            elif isinstance(mine, set):
                value = mine | theirs
            elif isinstance(mine, dict) and field.name == "read_dead_by_file":
                value = collections.defaultdict(collections.Counter)
                for source in (mine, theirs):
                    for name, counts in source.items():
                        value[name] += counts
            elif isinstance(mine, collections.Counter):
                value = mine + theirs
            else:
                value = mine + theirs
            setattr(total, field.name, value)
        return total


@dataclasses.dataclass
class Case:
    name: str
    path: str
    expected: Expected
    doc: str = ""
    time_done: dict | None = None   # user -> exact epoch microseconds, where checked


def total(cases) -> Expected:
    result = Expected()
    for case in cases:
        result = result + case.expected
    return result


def _name(value) -> str:
    """The contract's normalization of user/exercise/problem_type, for the
    values these builders use: integers as decimal text, text stripped."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip()


class TextFile:
    """The physical lines of one JSON-lines or CSV file, each declared with
    what must happen to it."""

    def __init__(self, name: str, file_format: str, header: list[str] | None = None,
                 bom: bool = False):
        self.name, self.format, self.header, self.bom = name, file_format, header, bom
        self.lines: list[bytes] = []
        self.expected = Expected()

    def _encode(self, raw) -> bytes:
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, str):
            return raw.encode("utf-8")
        if self.format == "json":
            return json.dumps(raw).encode("utf-8")   # NaN/Infinity tokens on purpose
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(
            ["" if cell is None else cell for cell in raw])
        return buffer.getvalue().encode("utf-8")

    def _physical(self, raw):
        self.lines.append(self._encode(raw))
        self.expected.physical_records += 1
        self.expected.records_read += 1

    def blank(self, text: str = ""):
        """A blank line: not a record at all."""
        self.lines.append(text.encode("utf-8"))

    def good(self, raw, user, exercise, problem_type="", nulled=()):
        """Trained on, as (user, exercise, problem_type) after normalization;
        `nulled`: optional fields whose bad value is replaced by null."""
        self._physical(raw)
        self.expected.trained[user] += 1
        self.expected.users.add(user)
        self.expected.exercises.add(exercise)
        self.expected.pairs.add((exercise, problem_type))
        self.expected.optional_fields_nulled.update(nulled)

    def dead(self, raw, reason: str):
        """Dead-lettered at the read stage with `reason`."""
        self._physical(raw)
        self.expected.dead_lettered[reason] += 1
        self.expected.read_dead_by_file[self.name][reason] += 1

    def duplicate(self, raw, user):
        """An exact duplicate (after normalization) of a record declared before."""
        self._physical(raw)
        self.expected.duplicates_dropped += 1
        self.expected.users.add(user)

    def conflict(self, raw, user):
        """Dead-lettered at the sessionize stage as a conflicting duplicate."""
        self._physical(raw)
        self.expected.dead_lettered["conflicting_duplicate"] += 1
        self.expected.sessionize_dead[(user, "conflicting_duplicate")] += 1
        self.expected.users.add(user)

    def write(self, directory: str, doc: str = "") -> Case:
        path = os.path.join(directory, self.name)
        lines = list(self.lines)
        if self.header is not None:
            lines.insert(0, ",".join(self.header).encode("utf-8"))
        data = b"\n".join(lines) + b"\n"
        if self.bom:
            data = BOM.encode("utf-8") + data
        with open(path, "wb") as handle:
            handle.write(data)
        return Case(self.name[: self.name.rindex(".")], path, self.expected, doc)


class Records:
    """Fresh, individually valid records: a user and a time of their own each."""

    def __init__(self, prefix: str, start: datetime.datetime):
        self.prefix, self.start, self.count = prefix, start, 0

    def __call__(self, **fields) -> dict:
        self.count += 1
        record = {"user": f"{self.prefix}{self.count}", "exercise": "ex_a",
                  "problem_type": "pt", "problem_number": 1,
                  "time_done": iso(self.start + datetime.timedelta(minutes=self.count)),
                  "correct": True}
        record.update(fields)
        return {key: value for key, value in record.items() if value is not DROP}


def good_records() -> list[dict]:
    """The good block as plain records (time_done as ISO text)."""
    records = []
    for s in range(6):
        for e, exercise in enumerate(("ex_a", "ex_b")):
            for i in range(6):
                moment = BASE + datetime.timedelta(days=i, hours=s, minutes=30 * e)
                records.append({"user": f"good_{s}", "exercise": exercise,
                                "problem_type": "pt", "problem_number": i + 1,
                                "time_done": iso(moment), "correct": (s + i + e) % 3 != 0})
    return records


def _good_block(file: TextFile, as_row=None):
    for record in good_records():
        raw = as_row(record) if as_row else record
        file.good(raw, record["user"], record["exercise"], record["problem_type"])


# --------------------------------------------------------------------------- JSON lines

JSON_CASES = ("good", "nan_inf", "ids", "digits", "epoch", "spaces", "optional",
              "dupes", "separators", "bom", "badutf8", "misc")


def build_json_set(directory: str, now: datetime.datetime | None = None) -> dict[str, Case]:
    """One JSON-lines file per case under `directory` (all read by one run)."""
    now = now or datetime.datetime.now(UTC)
    os.makedirs(directory, exist_ok=True)
    cases = {}
    nan, inf = float("nan"), float("inf")

    f = TextFile("good.jsonl", "json")
    _good_block(f)
    cases["good"] = f.write(directory, "the good block: 72 records, all trained on")

    r = Records("nan_", BASE + datetime.timedelta(days=10))
    f = TextFile("nan_inf.jsonl", "json")
    f.dead(r(user=nan), "bad_user")
    f.dead(r(user=inf), "bad_user")
    f.dead(r(exercise=nan), "bad_exercise")
    f.dead(r(exercise=-inf), "bad_exercise")
    f.dead(r(problem_type=nan), "bad_problem_type")
    f.dead(r(problem_number=nan), "bad_problem_number")
    f.dead(r(problem_number=inf), "bad_problem_number")
    f.dead(r(time_done=nan), "bad_timestamp")
    f.dead(r(time_done=inf), "bad_timestamp")
    f.dead(r(time_done=-inf), "bad_timestamp")
    f.dead(r(correct=nan), "bad_boolean")
    f.dead(r(correct=inf), "bad_boolean")
    f.good(r(time_taken=nan), f"nan_{r.count}", "ex_a", "pt", nulled=["time_taken"])
    f.good(r(count_hints=inf), f"nan_{r.count}", "ex_a", "pt", nulled=["count_hints"])
    f.good(r(count_attempts=-inf), f"nan_{r.count}", "ex_a", "pt", nulled=["count_attempts"])
    cases["nan_inf"] = f.write(directory, "NaN/Infinity tokens in every field: required and "
                                          "name fields are dead-lettered, optional ones nulled")

    r = Records("ids_", BASE + datetime.timedelta(days=11))
    f = TextFile("ids.jsonl", "json")
    # "é" * 513 is 513 characters but 1026 UTF-8 bytes; "x\ud800" (a lone
    # surrogate escape in the JSON text) is not Unicode text at all.
    for user in ({"id": 1}, [1, 2], True, False, 1.5, "é" * 513, "x\ud800"):
        f.dead(r(user=user), "bad_user")
    for exercise in ({"a": 1}, ["x"], True, 2.5, "x" * 1025):
        f.dead(r(exercise=exercise), "bad_exercise")
    for problem_type in ({"k": 1}, ["a"], False, 1.0, "p" * 1025):
        f.dead(r(problem_type=problem_type), "bad_problem_type")
    same = {"exercise": "ex_a", "problem_type": "pt", "problem_number": 1,
            "time_done": "2026-01-12T12:00:00Z", "correct": True}
    f.good(dict(same, user=4242042), "4242042", "ex_a", "pt")
    f.duplicate(dict(same, user="4242042"), "4242042")      # 42 == "42"
    f.good(r(user=-5), "-5", "ex_a", "pt")
    spaced = " " + "u" * 1024 + " "                          # 1024 bytes once stripped
    f.good(r(user=spaced), "u" * 1024, "ex_a", "pt")
    f.good(r(exercise=7), f"ids_{r.count}", "7", "pt")
    f.good(r(problem_type=3), f"ids_{r.count}", "ex_a", "3")
    f.good(r(problem_type=None), f"ids_{r.count}", "ex_a", "")
    cases["ids"] = f.write(directory, "non-string ids: objects, arrays, booleans, floats and "
                                      "over-long names are bad; integers are their text")

    r = Records("dig_", BASE + datetime.timedelta(days=12))
    f = TextFile("digits.jsonl", "json")
    for text in ("1_767_225_600", "١٧٦٧٢٢٥٦٠٠", "nan", "inf", "-Infinity", "1e9",
                 "10000-01-01T00:00:00Z", "yesterday"):
        f.dead(r(time_done=text), "bad_timestamp")
    for number in ("1_000", "١٢", "2.5", 0, -1, True, "abc"):
        f.dead(r(problem_number=number), "bad_problem_number")
    for correct in ("١", 2, "maybe", [True]):
        f.dead(r(correct=correct), "bad_boolean")
    for fields in ({"time_done": "1767225600"}, {"time_done": "+1767225601.5"},
                   {"time_done": 1767225602}, {"time_done": "2026-01-01T00:00:03+00:00"},
                   {"time_done": "2026-01-01 00:00:04 UTC"}, {"problem_number": "3.0"},
                   {"problem_number": "+2"}, {"problem_number": 4.0},
                   {"correct": "YES"}, {"correct": 0}, {"correct": "f"}):
        f.good(r(**fields), f"dig_{r.count}", "ex_a", "pt")
    cases["digits"] = f.write(directory, "text numbers: only ASCII [+-]digits[.digits] are "
                                         "numbers ('1_000', Arabic-Indic digits, nan, 1e9 "
                                         "are not)")

    r = Records("ep_", BASE + datetime.timedelta(days=13))
    f = TextFile("epoch.jsonl", "json")
    for seconds in (1e11, 100000000000, "100000000000", "3000-01-01T00:00:00Z",
                    iso(now + datetime.timedelta(hours=3))):
        f.dead(r(time_done=seconds), "future_timestamp")     # 1e11 s is year 5138
    for millis in (1e12, 1767225600000, "1767225600000"):
        f.dead(r(time_done=millis), "bad_timestamp")         # beyond year 9999
    for fine in (1767225600.25, iso(now - datetime.timedelta(days=1)),
                 iso(now + datetime.timedelta(minutes=20))):
        f.good(r(time_done=fine), f"ep_{r.count}", "ex_a", "pt")
    cases["epoch"] = f.write(directory, "epoch seconds vs milliseconds: 1e11 is a future "
                                        "timestamp, 1e12 is outside years 1-9999")

    r = Records("ws_", BASE + datetime.timedelta(days=14))
    f = TextFile("spaces.jsonl", "json")
    same = {"exercise": "ex_a", "problem_type": "pt", "problem_number": 1,
            "time_done": "2026-01-15T12:00:00Z", "correct": True}
    f.good(dict(same, user="alice_ws"), "alice_ws", "ex_a", "pt")
    for variant in (" alice_ws", "alice_ws\u00a0", "\u2003alice_ws"):
        f.duplicate(dict(same, user=variant), "alice_ws")
    f.good(dict(same, user="bob_ws"), "bob_ws", "ex_a", "pt")
    f.duplicate(dict(same, user="bob_ws", exercise="\tex_a\u3000"), "bob_ws")
    f.good(dict(same, user="carol_ws", problem_type="pt"), "carol_ws", "ex_a", "pt")
    f.duplicate(dict(same, user="carol_ws", problem_type=" pt\u2003"), "carol_ws")
    f.dead(r(user="\u00a0\u2003"), "missing_user")
    f.dead(r(user=None), "missing_user")
    f.dead(r(user=DROP), "missing_user")
    f.dead(r(exercise="   "), "missing_exercise")
    f.dead(r(exercise=None), "missing_exercise")
    f.dead(r(time_done=""), "missing_time_done")
    f.dead(r(time_done=DROP), "missing_time_done")
    f.dead(r(correct=" "), "missing_correct")
    f.dead(r(correct=None), "missing_correct")
    cases["spaces"] = f.write(directory, "Unicode whitespace around names is stripped (the "
                                         "variants are exact duplicates); whitespace-only "
                                         "required fields are missing")

    r = Records("opt_", BASE + datetime.timedelta(days=15))
    f = TextFile("optional.jsonl", "json")
    f.good(r(time_taken=nan), f"opt_{r.count}", "ex_a", "pt", nulled=["time_taken"])
    f.good(r(count_hints="abc"), f"opt_{r.count}", "ex_a", "pt", nulled=["count_hints"])
    f.good(r(count_attempts=1.5), f"opt_{r.count}", "ex_a", "pt", nulled=["count_attempts"])
    f.good(r(time_taken={}), f"opt_{r.count}", "ex_a", "pt", nulled=["time_taken"])
    f.good(r(time_taken=-5), f"opt_{r.count}", "ex_a", "pt")      # negative is fine
    f.good(r(count_hints="3"), f"opt_{r.count}", "ex_a", "pt")
    f.good(r(count_attempts=2.0), f"opt_{r.count}", "ex_a", "pt")
    cases["optional"] = f.write(directory, "bad optional fields are nulled and counted; the "
                                           "attempt is trained on")

    f = TextFile("dupes.jsonl", "json")
    key = {"exercise": "ex_a", "problem_type": "pt", "problem_number": 1,
           "time_done": "2026-01-17T12:00:00Z"}
    f.conflict(dict(key, user="dup_1", correct=True), "dup_1")
    f.conflict(dict(key, user="dup_1", correct=False), "dup_1")
    f.duplicate(dict(key, user="dup_1", correct=True), "dup_1")   # exact copy of the first
    f.conflict(dict(key, user="dup_2", correct="yes"), "dup_2")
    f.conflict(dict(key, user="dup_2", correct=0), "dup_2")
    f.good(dict(key, user="dup_3", correct=True), "dup_3", "ex_a", "pt")
    f.duplicate(dict(key, user="dup_3", correct="true"), "dup_3")  # same value, other text
    f.good(dict(key, user="dup_4", correct=True), "dup_4", "ex_a", "pt")
    f.good(dict(key, user="dup_4", correct=False, problem_number=2), "dup_4", "ex_a", "pt")
    f.good(dict(key, user="dup_5", correct=True, time_taken=5), "dup_5", "ex_a", "pt")
    f.good(dict(key, user="dup_5", correct=True, time_taken=6), "dup_5", "ex_a", "pt")
    cases["dupes"] = f.write(directory, "same user/exercise/time/problem_number with different "
                                        "`correct`: all dead-lettered (after exact duplicates "
                                        "are dropped); other differences are fine")

    r = Records("sep_", BASE + datetime.timedelta(days=17))
    f = TextFile("separators.jsonl", "json")
    for exercise, problem_type in UNIT_SEPARATOR_PAIR + PIPE_PAIR + ODD_NAMES:
        f.good(r(exercise=exercise, problem_type=problem_type), f"sep_{r.count}",
               exercise, problem_type)
    cases["separators"] = f.write(directory, "names full of separators (| = \\x1f , \" tab "
                                             "newline) are trained on as themselves")

    r = Records("bom_", BASE + datetime.timedelta(days=18))
    f = TextFile("bom.jsonl", "json", bom=True)
    for _ in range(3):
        f.good(r(), f"bom_{r.count}", "ex_a", "pt")
    cases["bom"] = f.write(directory, "a byte-order mark before the first record is ignored")

    r = Records("utf_", BASE + datetime.timedelta(days=19))
    f = TextFile("badutf8.jsonl", "json")
    for _ in range(2):
        f.good(r(), f"utf_{r.count}", "ex_a", "pt")
    f.dead(json.dumps(r(user="utf_BAD")).encode().replace(b"BAD", b"\xff"), "bad_encoding")
    for _ in range(2):
        f.good(r(), f"utf_{r.count}", "ex_a", "pt")
    f.dead(json.dumps(r(exercise="ex_aQ")).encode().replace(b"Q", b"\xe2\x82"),
           "bad_encoding")                                   # truncated 3-byte sequence
    f.good(r(), f"utf_{r.count}", "ex_a", "pt")
    cases["badutf8"] = f.write(directory, "an invalid UTF-8 line loses only that line")

    r = Records("misc_", BASE + datetime.timedelta(days=20))
    f = TextFile("misc.jsonl", "json")
    f.dead("{not json", "bad_json")
    f.blank()
    f.dead("[1, 2]", "not_a_record")
    f.dead('"just text"', "not_a_record")
    f.dead("42", "not_a_record")
    f.dead("null", "not_a_record")
    f.blank("   ")
    f.dead('{"user": "misc_cut", "exercise"', "bad_json")
    f.good(r(extra_field={"nested": [1, 2]}), f"misc_{r.count}", "ex_a", "pt")
    cases["misc"] = f.write(directory, "lines that are not JSON or not objects; blank lines "
                                       "are not records")
    return cases


def good_jsonl(directory: str) -> str:
    """The good block alone, as JSON lines."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "good.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in good_records())
    return path


def unusable_json(directory: str) -> str:
    """A JSON-lines file in which no record can be used."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "unusable.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{not json\n[1, 2]\n{"user": null, "exercise": "ex_a", '
                     '"time_done": "2026-01-01T00:00:00Z", "correct": true}\n'
                     '{"user": "u", "exercise": "ex_a", "time_done": NaN, "correct": true}\n')
    return path


def hand_made_model(directory: str) -> str:
    """A minimal training output directory (what serving.load_local reads:
    params, components, run_summary.json's model settings) with theta 0 for
    ex_a, written by hand so a monitor test needs no training run."""
    for folder, records in (("params", [{"exercise": "ex_a", "theta": [0.0] * (7 + D)}]),
                            ("components", [])):
        os.makedirs(os.path.join(directory, folder), exist_ok=True)
        with open(os.path.join(directory, folder, f"{folder}.jsonl"), "w",
                  encoding="utf-8") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in records)
    with open(os.path.join(directory, "run_summary.json"), "w", encoding="utf-8") as handle:
        json.dump({"model": {"seed": SEED, "num_random_features": D,
                             "model_version": "hand-made"}}, handle)
    return directory


def year_one_logs(directory: str) -> str:
    """The good block plus attempts dated in year 1 (the earliest valid
    TIMESTAMP), by students of the good block and by one of their own."""
    os.makedirs(directory, exist_ok=True)
    records = good_records()
    for day, user in ((2, "good_0"), (2, "good_1"), (2, "old_1"), (3, "old_1")):
        records.append({"user": user, "exercise": "ex_a", "problem_type": "pt",
                        "time_done": f"0001-01-0{day}T00:00:00Z", "correct": day == 2})
    path = os.path.join(directory, "year_one.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    return path


# --------------------------------------------------------------------------- CSV

CSV_CASES = ("good", "bom", "badutf8", "bigcell", "quote", "text")


def build_csv_set(directory: str) -> dict[str, Case]:
    """One CSV file per case under `directory` (all read by one run)."""
    os.makedirs(directory, exist_ok=True)
    cases = {}

    def cells(record):
        return [record[column] for column in CSV_HEADER]

    f = TextFile("good.csv", "csv", CSV_HEADER)
    _good_block(f, cells)
    cases["good"] = f.write(directory, "the good block")

    r = Records("cbom_", BASE + datetime.timedelta(days=30))
    f = TextFile("bom.csv", "csv", CSV_HEADER, bom=True)
    for _ in range(3):
        f.good(cells(r()), f"cbom_{r.count}", "ex_a", "pt")
    cases["bom"] = f.write(directory, "a byte-order mark before the header is ignored")

    r = Records("cutf_", BASE + datetime.timedelta(days=31))
    f = TextFile("badutf8.csv", "csv", CSV_HEADER)
    for _ in range(2):
        f.good(cells(r()), f"cutf_{r.count}", "ex_a", "pt")
    f.dead(b"cutf_\xff,ex_a,pt,1,2026-02-01T00:00:00Z,true", "bad_encoding")
    for _ in range(2):
        f.good(cells(r()), f"cutf_{r.count}", "ex_a", "pt")
    f.dead(b"cutf_x,ex_\xc3,pt,1,2026-02-01T00:00:01Z,true", "bad_encoding")
    f.good(cells(r()), f"cutf_{r.count}", "ex_a", "pt")
    cases["badutf8"] = f.write(directory, "an invalid UTF-8 line loses only that line")

    r = Records("cbig_", BASE + datetime.timedelta(days=32))
    header = CSV_HEADER + ["note"]
    f = TextFile("bigcell.csv", "csv", header)

    def with_note(record, note):
        return cells(record) + [note]
    f.good(with_note(r(), "a,b" * 70_000), f"cbig_{r.count}", "ex_a", "pt")   # 210 KB, quoted
    f.dead(with_note(r(user="U" * 200_000), "short"), "bad_user")
    f.good(with_note(r(), "short"), f"cbig_{r.count}", "ex_a", "pt")
    f.dead(with_note(r(exercise="E" * 200_000), ""), "bad_exercise")
    f.good(with_note(r(), "x" * 200_000), f"cbig_{r.count}", "ex_a", "pt")   # unquoted
    cases["bigcell"] = f.write(directory, "200 KB cells: judged by the field they map to")

    r = Records("cq_", BASE + datetime.timedelta(days=33))
    f = TextFile("quote.csv", "csv", CSV_HEADER)
    f.good(cells(r()), f"cq_{r.count}", "ex_a", "pt")
    f.dead('cq_open,"ex_a,pt,1,2026-02-03T00:00:00Z,true', "bad_csv_row")
    f.good(cells(r()), f"cq_{r.count}", "ex_a", "pt")
    f.dead("cq_few,ex_a,pt", "bad_csv_row")
    f.dead("cq_many,ex_a,pt,1,2026-02-03T00:00:01Z,true,extra", "bad_csv_row")
    f.good(cells(r(exercise="ex,a")), f"cq_{r.count}", "ex,a", "pt")
    f.good(cells(r(user='cq"quoted')), 'cq"quoted', "ex_a", "pt")
    f.dead('cq_last,ex_a,pt,1,2026-02-03T00:00:02Z,"true', "bad_csv_row")
    cases["quote"] = f.write(directory, "an unterminated quote is one bad row and does not "
                                        "swallow the next lines; ragged rows are bad")

    r = Records("ctx_", BASE + datetime.timedelta(days=34))
    header = CSV_HEADER + ["time_taken"]
    f = TextFile("text.csv", "csv", header)

    def timed(record, time_taken=None):
        return cells(record) + [time_taken]
    for text in ("١٧٦٧٢٢٥٦٠٠", "1_767_225_600", "NaN", "1e9", "1767225600000"):
        f.dead(timed(r(time_done=text)), "bad_timestamp")
    f.dead(timed(r(time_done="100000000000")), "future_timestamp")
    for text in ("١", "1_000", "nan"):
        f.dead(timed(r(problem_number=text)), "bad_problem_number")
    f.dead(timed(r(correct="2")), "bad_boolean")
    f.dead(timed(r(user="")), "missing_user")
    f.dead(timed(r(time_done="  ")), "missing_time_done")
    for fields in ({"time_done": "1767225600"}, {"time_done": "+1767225601.5"},
                   {"problem_number": "2.0"}, {"problem_number": None}, {"correct": "Y"}):
        f.good(timed(r(**fields)), f"ctx_{r.count}", "ex_a", "pt")
    for bad in ("abc", "1.5", "NaN"):
        f.good(timed(r(), bad), f"ctx_{r.count}", "ex_a", "pt", nulled=["time_taken"])
    f.good(timed(r(), "-3"), f"ctx_{r.count}", "ex_a", "pt")
    same = r()
    f.good(timed(same), same["user"], "ex_a", "pt")
    f.duplicate(timed(dict(same, user="\u2003" + same["user"] + "\u00a0")), same["user"])
    cases["text"] = f.write(directory, "text cells: numbers, booleans, optional fields and "
                                       "whitespace as in JSON")
    return cases


def renamed_csv(directory: str) -> tuple[str, int]:
    """The good block under the header student_id,skill,timestamp,is_correct."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "renamed.csv")
    records = good_records()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["student_id", "skill", "timestamp", "is_correct"])
        for record in records:
            writer.writerow([record["user"], record["exercise"], record["time_done"],
                             "true" if record["correct"] else "false"])
    return path, len(records)


# --------------------------------------------------------------------------- Parquet

PARQUET_CASES = ("good", "floats", "ts_s_utc", "ts_ms_naive", "ts_ms_kolkata", "ts_us_utc",
                 "ts_ns_utc", "ts_ns_naive", "rowgroups")

_TYPED = pa.schema([("user", pa.string()), ("exercise", pa.string()),
                    ("problem_type", pa.string()), ("problem_number", pa.int64()),
                    ("time_done", pa.timestamp("us", tz="UTC")), ("correct", pa.bool_()),
                    ("time_taken", pa.int64()), ("count_hints", pa.int64()),
                    ("count_attempts", pa.int64())])


def _typed_rows(records):
    rows = []
    for record in records:
        row = dict.fromkeys(_TYPED.names)
        row.update(record)
        row["time_done"] = datetime.datetime.fromisoformat(record["time_done"])
        rows.append(row)
    return rows


def _expect_trained(records) -> Expected:
    expected = Expected(physical_records=len(records), records_read=len(records))
    for record in records:
        expected.trained[record["user"]] += 1
        expected.users.add(record["user"])
        expected.exercises.add(record["exercise"])
        expected.pairs.add((record["exercise"], record.get("problem_type") or ""))
    return expected


def build_parquet_set(directory: str) -> dict[str, Case]:
    """One Parquet file per case under `directory` (all read by one run)."""
    os.makedirs(directory, exist_ok=True)
    cases = {}

    def path_of(name):
        return os.path.join(directory, f"{name}.parquet")

    records = good_records()
    pq.write_table(pa.Table.from_pylist(_typed_rows(records), schema=_TYPED), path_of("good"))
    cases["good"] = Case("good", path_of("good"), _expect_trained(records))

    # pandas writes nullable integer columns as float64 with NaN for null.
    nan, inf = float("nan"), float("inf")
    rows = [  # problem_number, time_taken, count_hints, count_attempts, outcome
        (1.0, nan, 0.0, nan, None),
        (nan, 1.5, nan, nan, "time_taken"),
        (3.0, nan, inf, nan, "count_hints"),
        (2.5, nan, nan, nan, "bad_problem_number"),
        (inf, nan, nan, nan, "bad_problem_number"),
        (nan, nan, nan, -inf, "count_attempts"),
        (0.0, nan, nan, nan, "bad_problem_number"),
        (2.0, 7.0, 1.0, 2.0, None),
    ]
    expected = Expected(physical_records=len(rows) + 2, records_read=len(rows) + 2)
    columns = {name: [] for name in _TYPED.names}
    for i, (number, taken, hints, attempts, outcome) in enumerate(rows):
        user = f"pf_{i}"
        for name, value in (("user", user), ("exercise", "ex_a"), ("problem_type", "pt"),
                            ("problem_number", number), ("time_taken", taken),
                            ("count_hints", hints), ("count_attempts", attempts),
                            ("time_done", BASE + datetime.timedelta(days=40, minutes=i)),
                            ("correct", i % 2 == 0)):
            columns[name].append(value)
        if outcome is None or not outcome.startswith("bad_"):
            expected.trained[user] += 1
            expected.users.add(user)
            expected.exercises.add("ex_a")
            expected.pairs.add(("ex_a", "pt"))
            if outcome:
                expected.optional_fields_nulled[outcome] += 1
        else:
            expected.dead_lettered[outcome] += 1
            expected.read_dead_by_file["floats.parquet"][outcome] += 1
    for user, correct, reason in ((None, True, "missing_user"), ("pf_nc", None,
                                                                 "missing_correct")):
        for name, value in (("user", user), ("exercise", "ex_a"), ("problem_type", "pt"),
                            ("problem_number", 1.0), ("time_taken", nan),
                            ("count_hints", nan), ("count_attempts", nan),
                            ("time_done", BASE + datetime.timedelta(days=41)),
                            ("correct", correct)):
            columns[name].append(value)
        expected.dead_lettered[reason] += 1
        expected.read_dead_by_file["floats.parquet"][reason] += 1
    float_schema = pa.schema([(field.name, pa.float64()) if field.type == pa.int64()
                              else field for field in _TYPED])
    pq.write_table(pa.table(columns, schema=float_schema), path_of("floats"))
    cases["floats"] = Case("floats", path_of("floats"), expected,
                           "float64 + NaN integer columns (as pandas writes them)")

    second = 1_767_312_000                  # 2026-01-02T00:00:00Z
    for name, unit, tz, values, exact in (
            ("ts_s_utc", "s", "UTC", [second, second + 1],
             [second * 10 ** 6, (second + 1) * 10 ** 6]),
            ("ts_ms_naive", "ms", None, [second * 1000 + 123, second * 1000 + 1999],
             [second * 10 ** 6 + 123_000, second * 10 ** 6 + 1_999_000]),
            ("ts_ms_kolkata", "ms", "Asia/Kolkata", [second * 1000 + 7, second * 1000 + 8],
             [second * 10 ** 6 + 7000, second * 10 ** 6 + 8000]),
            ("ts_us_utc", "us", "UTC", [second * 10 ** 6 + 123_456, second * 10 ** 6 + 999_999],
             [second * 10 ** 6 + 123_456, second * 10 ** 6 + 999_999]),
            ("ts_ns_utc", "ns", "UTC", [second * 10 ** 9 + 123_456_789,
                                        second * 10 ** 9 + 999_999_999],
             [second * 10 ** 6 + 123_456, second * 10 ** 6 + 999_999]),
            ("ts_ns_naive", "ns", None, [second * 10 ** 9 + 1, second * 10 ** 9 + 1000],
             [second * 10 ** 6, second * 10 ** 6 + 1])):
        users = [f"{name}_{i}" for i in range(len(values))]
        table = pa.table({"user": users, "exercise": ["ex_a"] * len(values),
                          "time_done": pa.array(values, pa.timestamp(unit, tz=tz)),
                          "correct": [True, False]})
        pq.write_table(table, path_of(name))
        records = [{"user": user, "exercise": "ex_a"} for user in users]
        cases[name] = Case(name, path_of(name), _expect_trained(records),
                           f"time_done as timestamp[{unit}, tz={tz}] is read exactly",
                           dict(zip(users, exact)))

    records = [{"user": f"rg_{i}", "exercise": "ex_a", "problem_type": "pt",
                "problem_number": 1, "time_done": iso(BASE + datetime.timedelta(days=42,
                                                                               minutes=i)),
                "correct": i % 3 != 0} for i in range(16)]
    path = path_of("rowgroups")
    pq.write_table(pa.Table.from_pylist(_typed_rows(records), schema=_TYPED), path,
                   row_group_size=4)
    damaged = 2
    corrupt_parquet_row_group(path, damaged)
    kept = [record for i, record in enumerate(records) if i // 4 != damaged]
    expected = _expect_trained(kept)
    expected.physical_records = len(records)
    expected.records_unreadable = 4
    expected.unreadable_stretches = 1
    expected.stretches_by_file["rowgroups.parquet"] = 1
    cases["rowgroups"] = Case("rowgroups", path, expected,
                              "4 row groups of 4 rows, the third one's pages overwritten")
    return cases


def corrupt_parquet_row_group(path: str, index: int) -> None:
    """Overwrite every column chunk of row group `index` (page headers and
    data, from the pyarrow metadata offsets) with 0xFF; the footer stays
    intact, so its row counts are still known."""
    metadata = pq.ParquetFile(path).metadata
    group = metadata.row_group(index)
    with open(path, "rb") as handle:
        data = bytearray(handle.read())
    for j in range(group.num_columns):
        column = group.column(j)
        start = (column.dictionary_page_offset if column.has_dictionary_page
                 else column.data_page_offset)
        data[start:start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    check = pq.ParquetFile(path)
    for i in range(check.metadata.num_row_groups):
        try:
            check.read_row_group(i)
            assert i != index, "the damaged row group still reads"
        except OSError:
            assert i == index


def renamed_parquet(directory: str) -> tuple[str, int]:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "renamed.parquet")
    records = good_records()
    pq.write_table(pa.table({
        "student_id": [r["user"] for r in records], "skill": [r["exercise"] for r in records],
        "timestamp": pa.array([datetime.datetime.fromisoformat(r["time_done"])
                               for r in records], pa.timestamp("us", tz="UTC")),
        "is_correct": [r["correct"] for r in records]}), path)
    return path, len(records)


# --------------------------------------------------------------------------- Avro

AVRO_CASES = ("good", "middle", "truncated", "header")
SYNC_MARKER = bytes(range(0xA0, 0xB0))   # 16 bytes that occur nowhere in the data
_RECORDS_PER_BLOCK, _BLOCKS = 4, 5


def _avro_record(record):
    return {**dict.fromkeys(f["name"] for f in PROBLEM_LOG_AVRO_SCHEMA["fields"]),
            **record, "time_done": datetime.datetime.fromisoformat(record["time_done"])}


def write_avro_blocks(path: str, blocks: list[list[dict]], schema=None) -> bytes:
    """One Avro data block per list (null codec), with SYNC_MARKER."""
    buffer = io.BytesIO()
    writer = Writer(buffer, fastavro.parse_schema(schema or PROBLEM_LOG_AVRO_SCHEMA),
                    sync_marker=SYNC_MARKER)
    for block in blocks:
        for record in block:
            writer.write(record)
        writer.flush()
    data = buffer.getvalue()
    with open(path, "wb") as handle:
        handle.write(data)
    return data


def _read_long(data: bytes, position: int):
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position


def avro_blocks(data: bytes):
    """[(block start, data start, data end, record count)] found by SYNC_MARKER:
    the header ends with it and every block is followed by it."""
    markers = []
    position = data.find(SYNC_MARKER)
    while position >= 0:
        markers.append(position)
        position = data.find(SYNC_MARKER, position + 1)
    blocks = []
    for before, after in itertools.pairwise(markers):
        start = before + len(SYNC_MARKER)
        count, position = _read_long(data, start)
        size, position = _read_long(data, position)
        assert position + size == after, "block layout not as expected"
        blocks.append((start, position, after, count))
    return blocks


def build_avro_set(directory: str) -> dict[str, Case]:
    """One Avro file per case under `directory` (all read by one run): the
    good block, and three files of 5 blocks x 4 records damaged in different
    ways."""
    os.makedirs(directory, exist_ok=True)
    cases = {}
    records = good_records()
    path = os.path.join(directory, "good.avro")
    write_avro_blocks(path, [[_avro_record(r) for r in records]])
    cases["good"] = Case("good", path, _expect_trained(records))

    def five_blocks(prefix, day):
        plain = [{"user": f"{prefix}{i}", "exercise": "ex_a", "problem_type": "pt",
                  "problem_number": 1,
                  "time_done": iso(BASE + datetime.timedelta(days=day, minutes=i)),
                  "correct": i % 3 != 0}
                 for i in range(_RECORDS_PER_BLOCK * _BLOCKS)]
        blocks = [[_avro_record(r) for r in plain[b * 4:(b + 1) * 4]] for b in range(_BLOCKS)]
        return plain, blocks

    # Middle: block 2's data (after its count and size) overwritten with 0xFF.
    plain, blocks = five_blocks("avm_", 50)
    path = os.path.join(directory, "middle.avro")
    data = bytearray(write_avro_blocks(path, blocks))
    _, data_start, data_end, count = avro_blocks(bytes(data))[2]
    assert count == 4
    data[data_start:data_end] = b"\xff" * (data_end - data_start)
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    kept = plain[:8] + plain[12:]
    expected = _expect_trained(kept)
    expected.physical_records, expected.records_unreadable = 20, 4
    expected.unreadable_stretches = 1
    expected.stretches_by_file["middle.avro"] = 1
    cases["middle"] = Case("middle", path, expected,
                           "bytes overwritten inside block 2 of 5: only that block is lost")

    # Truncated inside block 3's data: blocks 0-2 read, block 3's header count
    # is readable (4 unreadable), block 4 is gone from the file.
    plain, blocks = five_blocks("avt_", 51)
    path = os.path.join(directory, "truncated.avro")
    data = write_avro_blocks(path, blocks)
    _, data_start, data_end, _ = avro_blocks(data)[3]
    with open(path, "wb") as handle:
        handle.write(data[: (data_start + data_end) // 2])
    expected = _expect_trained(plain[:12])
    expected.physical_records, expected.records_unreadable = 16, 4
    expected.unreadable_stretches = 1
    expected.stretches_by_file["truncated.avro"] = 1
    cases["truncated"] = Case("truncated", path, expected,
                              "cut inside block 3 of 5: what was before is kept")

    # Header: block 2's count and size varints (and the first data bytes)
    # overwritten with 0xFF, so its record count is unknown: the bytes up to
    # the next sync marker are skipped and counted as bytes_unreadable.
    plain, blocks = five_blocks("avh_", 52)
    path = os.path.join(directory, "header.avro")
    data = bytearray(write_avro_blocks(path, blocks))
    start = avro_blocks(bytes(data))[2][0]
    data[start:start + 12] = b"\xff" * 12
    with open(path, "wb") as handle:
        handle.write(bytes(data))
    kept = plain[:8] + plain[12:]
    expected = _expect_trained(kept)
    expected.unreadable_stretches = 1
    expected.stretches_by_file["header.avro"] = 1
    expected.bytes_unreadable_positive = True
    cases["header"] = Case("header", path, expected,
                           "block 2's header overwritten: its bytes are skipped, the blocks "
                           "after it are read")
    return cases


RENAMED_AVRO_SCHEMA = {
    "type": "record", "name": "Renamed",
    "fields": [{"name": "student_id", "type": "string"}, {"name": "skill", "type": "string"},
               {"name": "timestamp", "type": {"type": "long",
                                              "logicalType": "timestamp-micros"}},
               {"name": "is_correct", "type": "boolean"}]}


def renamed_avro(directory: str) -> tuple[str, int]:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "renamed.avro")
    records = good_records()
    write_avro_blocks(path, [[{"student_id": r["user"], "skill": r["exercise"],
                               "timestamp": datetime.datetime.fromisoformat(r["time_done"]),
                               "is_correct": r["correct"]} for r in records]],
                      RENAMED_AVRO_SCHEMA)
    return path, len(records)
