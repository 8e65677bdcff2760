"""--state_input / --state_output: nightly training from saved student state.

A run can start every student from the snapshot an earlier run saved
(--state_input) and save the states after its own logs (--state_output), so
it reads only the logs since that snapshot and still gives every student the
features their whole history gives. The snapshot's header records what is
baked into the states (seed, dimension, feature contract), and the end of the
date window its run read, where this run's reading starts.
"""

import datetime

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from models.knowledge_state import WINDOW
from models.student_state import CONTRACT_VERSION
from pipelines.option_types import positive_int
from transforms.student_state import HEADER, SHARD_PATTERN, read_header

FORMAT = "knowledge-model-student-state"


class StateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("saved student state")
        group.add_argument("--state_input", default="",
                           help="A snapshot directory an earlier run wrote with "
                                "--state_output: every student starts from its saved "
                                "state (students not in it start empty), and only logs "
                                "after the snapshot's date window are read (--history_days "
                                "is not used). Refused when unfinished or made with another "
                                "--seed or --num_random_features.")
        group.add_argument("--state_output", default="",
                           help="Directory for a snapshot of every student's state after "
                                "this run (Parquet shards, then SNAPSHOT.json once all are "
                                "written), for the next run's --state_input. An existing "
                                "snapshot there needs --overwrite.")
        group.add_argument("--state_dir", default="",
                           help="For nightly runs, instead of --state_input/--state_output: "
                                "snapshots live in dated folders DIR/YYYY-MM-DD. The run "
                                "writes DIR/<--run_date> (default: today in UTC) and starts "
                                "from the latest finished snapshot dated before it; with none, "
                                "it replays the whole history (the first run).")
        group.add_argument("--state_keep", type=positive_int, default=7,
                           help="With --state_dir: dated snapshots before the run date kept "
                                "(the newest ones); older ones are deleted when a run starts.")


def _dated_snapshots(root: str):
    """{date: folder} of the dated folders under `root` holding a finished
    snapshot, and the set of dates of every dated folder."""
    root = root.rstrip("/")
    finished, every = {}, set()
    patterns = [FileSystems.join(root, "*", HEADER), FileSystems.join(root, "*", SHARD_PATTERN)]
    for number, match in enumerate(FileSystems.match(patterns)):
        for metadata in match.metadata_list:
            folder = metadata.path[:metadata.path.rstrip("/").rfind("/")]
            name = folder.rstrip("/").rsplit("/", 1)[-1]
            try:
                day = datetime.date.fromisoformat(name)
            except ValueError:
                continue
            every.add(day)
            if number == 0:
                finished[day] = folder
    return finished, every


def resolve_state_dir(options, today: datetime.date = None):
    """(state_input, state_output, dated folders to delete) for --state_dir,
    or the explicit options. Raises ValueError naming the option."""
    if not options.state_dir:
        return options.state_input, options.state_output, []
    if options.state_input or options.state_output:
        raise ValueError("--state_dir replaces --state_input and --state_output; give either")
    try:
        run_date = (datetime.date.fromisoformat(options.run_date) if options.run_date
                    else today or datetime.datetime.now(datetime.timezone.utc).date())
    except ValueError:
        raise ValueError(f"--run_date {options.run_date!r} is not a date YYYY-MM-DD") from None
    root = options.state_dir.rstrip("/")
    finished, every = _dated_snapshots(root)
    earlier = sorted(day for day in finished if day < run_date)
    state_input = finished[earlier[-1]] if earlier else ""
    kept = set(earlier[-options.state_keep:])
    expired = [FileSystems.join(root, day.isoformat()) for day in sorted(every)
               if day < run_date and day not in kept]
    return state_input, FileSystems.join(root, run_date.isoformat()), expired


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


def snapshot_header(options, settings: dict, logs_until) -> dict:
    """What the new snapshot's header records besides its shards."""
    return {"format": FORMAT, "contract_version": CONTRACT_VERSION, "window": WINDOW,
            "seed": options.seed, "num_random_features": options.num_random_features,
            "logs_until": logs_until.isoformat() if logs_until else None,
            "previous_snapshot": settings["state_input"] or None,
            "model_version": settings["model_version"], "run_id": settings["run_id"],
            "written_at": settings["trained_at"]}
