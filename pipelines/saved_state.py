"""--state_input / --state_output: nightly training from saved student state.

A run can start every student from the snapshot an earlier run saved
(--state_input) and save the states after its own logs (--state_output), so
it reads only the logs since that snapshot and still gives every student the
features their whole history gives. The snapshot's header records what is
baked into the states (seed, dimension, feature contract), and the end of the
date window its run read, where this run's reading starts.
"""

import datetime
from typing import List, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from models.knowledge_state import WINDOW
from models.student_state import CONTRACT_VERSION
from pipelines.cli import UsageError
from pipelines.input_source import day_start_micros
from pipelines.options import run_date
from transforms.rows_store import (DONE, ReadRowsPartitions, SampleRowsByDay, WriteRowsPartition,
                                   partition_files, read_done)
from transforms.student_state import (HEADER, SHARD_PATTERN, ReadStudentStates,
                                      WriteStudentStates, read_header, snapshot_files)

ROWS_FOLDER = "rows"

FORMAT = "knowledge-model-student-state"


def _dated_folders(root: str, marker: str, pattern: str):
    """{date: folder} of the folders root/YYYY-MM-DD holding `marker` (a
    finished snapshot or partition), and the set of dates of every dated
    folder holding `marker` or files matching `pattern`."""
    root = root.rstrip("/")
    finished, every = {}, set()
    patterns = [FileSystems.join(root, "*", marker), FileSystems.join(root, "*", pattern)]
    for number, match in enumerate(FileSystems.match(patterns)):
        for metadata in match.metadata_list:
            folder = metadata.path[:metadata.path.rstrip("/").rfind("/")]
            try:
                day = datetime.date.fromisoformat(folder.rsplit("/", 1)[-1])
            except ValueError:
                continue
            every.add(day)
            if number == 0:
                finished[day] = folder
    return finished, every


class StatePlan(NamedTuple):
    """Where a run's saved state comes from and goes (see resolve_state)."""
    state_input: str         # snapshot to continue ("" : none)
    state_output: str        # snapshot to write ("" : none)
    rows_output: str         # rows-store partition to write ("" : none)
    rows_inputs: List[str]   # finished partitions of the training window
    expired: List[str]       # dated folders to delete before the run


def resolve_state(options, window_start: Optional[datetime.date],
                  today: datetime.date = None) -> StatePlan:
    """The plan of --state_input/--state_output, or of --state_dir: continue
    the latest finished snapshot dated before the run date, write the run
    date's snapshot and rows partition, read the finished partitions of the
    training window, and delete what --state_keep and the window leave
    behind. Raises ValueError naming the option."""
    if not options.state_dir:
        return StatePlan(options.state_input, options.state_output, "", [], [])
    if options.state_input or options.state_output:
        raise ValueError("--state_dir replaces --state_input and --state_output; give either")
    tonight = run_date(options, today)
    root = options.state_dir.rstrip("/")
    rows_root = FileSystems.join(root, ROWS_FOLDER)
    snapshots, every_snapshot = _dated_folders(root, HEADER, SHARD_PATTERN)
    partitions, every_partition = _dated_folders(rows_root, DONE, "*.parquet")
    earlier = sorted(day for day in snapshots if day < tonight)
    kept = set(earlier[-options.state_keep:])
    in_window = sorted(day for day in partitions if day < tonight
                       and (window_start is None or day > window_start))
    expired = [FileSystems.join(root, day.isoformat()) for day in sorted(every_snapshot)
               if day < tonight and day not in kept]
    expired += [FileSystems.join(rows_root, day.isoformat()) for day in sorted(every_partition)
                if day < tonight and day not in in_window]
    folder = tonight.isoformat()
    return StatePlan(snapshots[earlier[-1]] if earlier else "", FileSystems.join(root, folder),
                     FileSystems.join(rows_root, folder),
                     [partitions[day] for day in in_window], expired)


def check_state_input(state_input: str, state_output: str, options) -> dict:
    """The snapshot's header after checking it matches this run; {} without
    a state input. Raises ValueError naming the option."""
    if not state_input:
        return {}
    if state_output and state_input.rstrip("/") == state_output.rstrip("/"):
        raise ValueError("--state_output must differ from --state_input (writing the new "
                         "snapshot would delete the one being read)")
    header = read_header(state_input)
    if header.get("format") != FORMAT:
        raise ValueError(f"--state_input {state_input!r} is not a student-state "
                         f"snapshot (format {header.get('format')!r})")
    expected = {"contract_version": CONTRACT_VERSION, "window": WINDOW, "seed": options.seed,
                "num_random_features": options.num_random_features}
    differ = {key: header.get(key) for key, value in expected.items()
              if header.get(key) != value}
    if differ:
        saved = ", ".join(f"{key} {value!r}" for key, value in differ.items())
        wanted = ", ".join(f"{key} {expected[key]!r}" for key in differ)
        raise ValueError(f"--state_input {state_input!r} was saved with {saved}; "
                         f"this run has {wanted}: its states would give other features. "
                         f"Replay the whole history (no --state_input) to start a new "
                         f"snapshot")
    missing = [name for name in header["files"] if not FileSystems.exists(
        FileSystems.join(state_input.rstrip("/"), name))]
    if missing:
        raise ValueError(f"--state_input {state_input!r} lacks {missing[0]} that its "
                         f"{HEADER} lists")
    return header


def state_paths(state_input: str, header: dict) -> list:
    return [FileSystems.join(state_input.rstrip("/"), name) for name in header["files"]]


def read_from(header: dict, window_start):
    """The first day to read with a snapshot: where its run's window ended
    (or the window's start, if later). None: no lower bound."""
    saved = header.get("logs_until")
    saved = datetime.date.fromisoformat(saved) if saved else None
    if saved and window_start:
        return max(saved, window_start)
    return saved or window_start


def snapshot_header(options, state_input: str, settings: dict, logs_until) -> dict:
    """What the new snapshot's header records besides its shards."""
    return {"format": FORMAT, "contract_version": CONTRACT_VERSION, "window": WINDOW,
            "seed": options.seed, "num_random_features": options.num_random_features,
            "logs_until": logs_until.isoformat() if logs_until else None,
            "previous_snapshot": state_input or None,
            "model_version": settings["model_version"], "run_id": settings["run_id"],
            "written_at": settings["trained_at"]}


class SavedState:
    """A run's saved-state work, planned before the graph is built: checks,
    the read window, the graph pieces and the summary's part."""

    def __init__(self, options, window_start, read_window):
        """`read_window`: (first day, day after the last) the run would read
        without saved state. Raises ValueError naming the option."""
        self.options = options
        self.plan = resolve_state(options, window_start)
        self.header = check_state_input(self.plan.state_input, self.plan.state_output, options)
        if self.header:  # the saved states replace the history before the window
            read_window = (read_from(self.header, window_start), read_window[1])
        elif options.state_dir:  # no snapshot yet: replay the whole history
            read_window = (None, read_window[1])
        self.read_window = read_window
        self.window_start = window_start
        self.partitions = [(folder, check_partition(folder, options))
                           for folder in self.plan.rows_inputs]

    @property
    def continues(self) -> bool:
        return bool(self.plan.state_input or self.plan.state_output)

    def files_to_replace(self, overwrite: bool) -> list:
        """What the run deletes before it starts: the snapshot and rows
        partition it rewrites (with --overwrite), and expired dated folders.
        Snapshot headers come first, so no deletion leaves a folder that
        looks finished. Raises UsageError without --overwrite."""
        plan = self.plan
        snapshot = snapshot_files(plan.state_output) if plan.state_output else []
        if snapshot and not overwrite:
            raise UsageError(f"--state_output {plan.state_output!r} already holds a snapshot "
                             f"(e.g. {snapshot[0]}); pass --overwrite to replace it")
        folders = ([plan.rows_output] if plan.rows_output else []) + plan.expired
        return snapshot + [path for folder in folders for path in folder_files(folder)]

    def add_states(self, pipeline, chunks, num_buckets: int):
        """The log chunks, plus the saved states' chunks when continuing."""
        if not self.header:
            return chunks
        states = pipeline | "ReadStudentStates" >> ReadStudentStates(
            state_paths(self.plan.state_input, self.header), num_buckets)
        return (chunks, states) | "LogsAndStates" >> beam.Flatten()

    def save(self, replayed_states, rows, settings: dict, fit_settings):
        """Writes the snapshot and this run's rows partition; returns what
        the fit samples from: `rows`, plus the stored rows of the window."""
        if not self.plan.state_output:
            return rows
        options = self.options
        header = replayed_states | "WriteStudentStates" >> WriteStudentStates(
            self.plan.state_output, snapshot_header(options, self.plan.state_input, settings,
                                                    self.read_window[1]),
            recent_from=day_start_micros(self.read_window[1]))
        if not self.plan.rows_output:
            return rows
        daily = rows | "SampleOwnRows" >> SampleRowsByDay(fit_settings.max_samples,
                                                          fit_settings.seed)
        own = daily | "ByExercise" >> beam.MapTuple(
            lambda key, sample: (key[0], (sample[0], {key[0]: sample[1]})))
        _ = ({"samples": daily, "after": header}
             | "WriteRowsPartition" >> WriteRowsPartition(
                 self.plan.rows_output, {"seed": options.seed,
                                         "num_random_features": options.num_random_features,
                                         "student_features": options.student_features,
                                         "run_id": settings["run_id"]}))
        if not self.partitions:
            return own
        stored = rows.pipeline | "ReadRowsPartitions" >> ReadRowsPartitions(
            [path for folder, done in self.partitions for path in partition_files(folder, done)],
            self.window_start)
        return (own, stored) | "OwnAndStoredRows" >> beam.Flatten()

    def outputs(self) -> dict:
        """The run summary's outputs it adds."""
        plan, outputs = self.plan, {}
        if plan.state_output:
            outputs["state"] = plan.state_output
        if plan.rows_output:
            outputs["rows_store"] = plan.rows_output
        return outputs

    def summary(self) -> dict:
        """The run summary's entries about what the run continued from."""
        summary = {}
        if self.partitions:
            summary["rows_store_inputs"] = [folder for folder, _ in self.partitions]
        if self.header:
            summary["state_input"] = {"path": self.plan.state_input, **{
                key: self.header.get(key)
                for key in ("logs_until", "students", "model_version", "written_at")}}
        return summary


def check_partition(folder: str, options) -> dict:
    """A rows partition's DONE.json, if its rows have this run's features."""
    done = read_done(folder)
    saved = (done.get("seed"), done.get("num_random_features"))
    if saved != (options.seed, options.num_random_features):
        raise ValueError(f"--state_dir: the rows partition {folder} was written with seed and "
                         f"dimension {saved}, not this run's ({options.seed}, "
                         f"{options.num_random_features}); use another --state_dir")
    if bool(done.get("student_features")) != options.student_features:
        written = "with" if done.get("student_features") else "without"
        raise ValueError(f"--state_dir: the rows partition {folder} was written {written} "
                         f"--student_features, unlike this run; use another --state_dir")
    return done


def folder_files(folder: str) -> list:
    """Every file directly in `folder`, marker files first."""
    paths = [metadata.path for match in FileSystems.match([FileSystems.join(folder, "*")])
             for metadata in match.metadata_list]
    return sorted(paths, key=lambda path: (not path.endswith(".json"), path))
