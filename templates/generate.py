"""Generate the Dataflow Flex Template metadata of every pipeline.

    python -m templates.generate            # (re)write templates/<pipeline>.json
    python -m templates.generate --check    # exit 1 if a file is stale or missing
    python -m templates.generate --print train_boosted

A pipeline is a module under pipelines/ with a main() and ARGUMENTS, the
option groups its command line accepts (train_knowledge_model, train_boosted,
monitor; a new one is picked up without changes here). Its template
parameters are exactly the flags of those groups (pipelines.arguments, e.g.
the shared add_problem_log_arguments), never the operator options (progress,
log levels) or the generic Beam options:

* name: the flag without "--"; label: the name in words; helpText: the
  argparse help, plus the default when the help does not state it;
* isOptional: false only for argparse-required flags and the single options
  in the pipeline's REQUIRED (flags with an empty default that its validation
  insists on, which its --help shows as required);
* regexes: from the flag's type (TYPE_REGEXES below: the value types of
  pipelines.option_types, e.g. positive_int, and plain int and float),
  choices and boolean actions, or from REGEXES below for values with a format
  (gs:// paths, bq:// tables, dates, lists). A flag without either is an
  error, so a new option cannot ship without validation. A range rule is thus
  stated once, in the option's type, and the regex follows it.

Boolean flags (store_true, e.g. --overwrite) are parameters taking "true" or
"false": the Flex Template launcher passes every parameter as --name=value,
and the program it runs rewrites those with
pipelines.flex_template.flex_template_argv (argparse itself rejects
"--overwrite=true").

tests/test_templates.py fails when the checked-in files differ from what this
generates; run the first command above and commit the result.
"""

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, "") and str(ROOT) not in sys.path:  # python templates/generate.py
    sys.path.insert(0, str(ROOT))

from models.problem_log import FIELDS  # noqa: E402
from models.sparse_features import ALL_TEMPLATES as FEATURE_TEMPLATES  # noqa: E402
from pipelines.flex_template import FALSE, TRUE, is_boolean  # noqa: E402
from pipelines.option_types import (IntBetween, fraction_in_0_1, non_negative_float,  # noqa: E402
                                    non_negative_int, positive_float, positive_int)
from transforms import read_bigquery  # noqa: E402

TEMPLATE_DIR = ROOT / "templates"
REGENERATE = "python -m templates.generate"

# --------------------------------------------------------------------------
# Validation building blocks. Plain syntax only (groups, classes, ^$, \s, \S):
# the same in Python, Java and RE2.
_BUCKET = r"[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9]"
_TABLE = read_bigquery._TABLE_SPEC.pattern
_PROJECT = read_bigquery._PROJECT
_DATASET = read_bigquery._DATASET
_TABLE_NAME = read_bigquery._TABLE
_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
_POSITIVE_NUMBER = r"([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)([eE][-+]?[0-9]+)?"
_ONE_OF = lambda names: "(" + "|".join(re.escape(name) for name in names) + ")"  # noqa: E731

INT = r"^-?[0-9]+$"
NON_NEGATIVE_INT = r"^[0-9]+$"
POSITIVE_INT = r"^[1-9][0-9]*$"
FLOAT = rf"^[-+]?{_NUMBER}$"
NON_NEGATIVE_FLOAT = rf"^{_NUMBER}$"
POSITIVE_FLOAT = rf"^{_POSITIVE_NUMBER}$"
# [0, 1): 0, .25, 0.25, 0., or one digit times a negative power of ten (1e-3).
FRACTION = r"^(0|0?\.[0-9]+|0\.|[0-9](\.[0-9]*)?[eE]-0*[1-9][0-9]*)$"
BOOLEAN = r"^(true|false)$"
DATE = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
GCS_FILES = rf"^gs://{_BUCKET}/\S+$"
GCS_DIRECTORY = rf"^gs://{_BUCKET}(/\S*)?$"
PROJECT = rf"^{_PROJECT}$"

# Values with a format, by flag name.
REGEXES: Dict[str, str] = {
    "input": rf"^(gs://{_BUCKET}/\S+|bq://{_TABLE})$",
    "output": GCS_DIRECTORY,
    "store": GCS_DIRECTORY,
    "training_rows_output": GCS_DIRECTORY,
    "state_input": GCS_DIRECTORY,
    "state_output": GCS_DIRECTORY,
    "state_dir": GCS_DIRECTORY,
    "column_mapping": (rf"^{_ONE_OF(FIELDS)}=[^,=\s]+(,{_ONE_OF(FIELDS)}=[^,=\s]+)*$"),
    "problem_number_range": r"^[1-9][0-9]*,[1-9][0-9]*$",
    "bq_project": PROJECT,
    "bq_dataset": rf"^{_DATASET}$",
    "bq_table": rf"^{_TABLE_NAME}$",
    "bq_temp_dataset": rf"^{_PROJECT}[.:]{_DATASET}$",
    "input_query": r"(?i)^\s*(select|with)\s[\s\S]*$",
    "start_date": DATE,
    "end_date": DATE,
    "run_date": DATE,
    "model_version": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
    "datastore_project": PROJECT,
    "datastore_namespace": r"^[A-Za-z0-9._-]{1,100}$",
    "templates": rf"^{_ONE_OF(FEATURE_TEMPLATES)}(,{_ONE_OF(FEATURE_TEMPLATES)})*$",
    "l1": rf"^{_NUMBER}(,{_NUMBER})*$",
    "l2_candidates": rf"^{_NUMBER}(,{_NUMBER})*$",
    "params": rf"^(datastore|gs://{_BUCKET}(/\S*)?)$",
    "metrics_table": rf"^{_TABLE}$",
}
# Values by the option's type (argparse `type=`); IntBetween(low, high)
# types get int_range_regex(low, high).
TYPE_REGEXES = {
    int: INT,
    float: FLOAT,
    positive_int: POSITIVE_INT,
    non_negative_int: NON_NEGATIVE_INT,
    fraction_in_0_1: FRACTION,
    non_negative_float: NON_NEGATIVE_FLOAT,
    positive_float: POSITIVE_FLOAT,
}
LABEL_WORDS = {"bq": "BigQuery", "l1": "L1", "l2": "L2", "id": "ID"}
LABELS = {
    "input": "ProblemLogs input",
    "output": "Output directory",
    "l1": "L1 strengths",
    "l2": "L2 penalty",
    "seed": "Model seed",
    "store": "Columnar store directory",
    "state_dir": "Dated student-state snapshots directory",
    "templates": "Feature templates",
}
NAMES = {"train_knowledge_model": "Knowledge model training",
         "train_boosted": "Parallel-boosted model training",
         "monitor": "Knowledge model monitoring"}


class MetadataError(ValueError):
    """An option the generator cannot describe (e.g. no validation regex)."""


# --------------------------------------------------------------------------
# Pipelines and their options

def pipeline_modules() -> Dict[str, object]:
    """Every entry point under pipelines/ that runs on Beam: a module with a
    main() and ARGUMENTS. name -> module."""
    import pipelines
    found = {}
    for info in sorted(pkgutil.iter_modules(pipelines.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"pipelines.{info.name}")
        if callable(getattr(module, "main", None)) and hasattr(module, "ARGUMENTS"):
            found[info.name] = module
    return found


def options_parser(module) -> argparse.ArgumentParser:
    """A parser holding only the pipeline's own flags: those its ARGUMENTS
    (add_<group>_arguments functions) add."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for add_arguments in module.ARGUMENTS:
        add_arguments(parser)
    return parser


def required_names(module) -> Set[str]:
    """The flags, without "--", that the pipeline refuses to run without
    (its REQUIRED but for alternatives, which a template cannot express)."""
    return {item[2:] for item in module.REQUIRED if isinstance(item, str)}


# --------------------------------------------------------------------------
# Template parameters


def label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    words = [LABEL_WORDS.get(word, word) for word in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:]] + words[1:])


def default_text(action: argparse.Action) -> str:
    """The default as a template parameter value ('' when there is none)."""
    if is_boolean(action):
        return TRUE if action.default else FALSE
    if action.default is None:
        return ""
    return str(action.default)


def help_text(action: argparse.Action) -> str:
    text = " ".join((action.help or "").split())
    if "%(" in text:
        text = text % {**vars(action), "prog": ""}
    if is_boolean(action):
        return f"{text} true or false (default: {default_text(action)})."
    default = default_text(action)
    if default and "default" not in text.lower():
        text = f"{text} Default: {default}."
    return text


def regexes(name: str, action: argparse.Action) -> List[str]:
    if is_boolean(action):
        return [BOOLEAN]
    if name in REGEXES:
        return [REGEXES[name]]
    if action.choices:
        return [f"^{_ONE_OF(str(choice) for choice in action.choices)}$"]
    if isinstance(action.type, IntBetween):
        return [int_range_regex(action.type.low, action.type.high)]
    if action.type in TYPE_REGEXES:
        return [TYPE_REGEXES[action.type]]
    raise MetadataError(f"--{name} has no validation regex: give it a type from "
                        f"pipelines/option_types.py (and TYPE_REGEXES), or add one to REGEXES "
                        f"in templates/generate.py; then run {REGENERATE}")


def _digit_runs(low: int, high: int):
    """[low, high] as consecutive runs, each the numbers of one length that
    share a prefix, then one digit from a range, then any digits: 1..500 ->
    1-9, 10-99, 100-499, 500-500. Zero is its own run."""
    runs, start = ([(0, 0, 0)], 1) if low == 0 else ([], low)
    while start <= high:
        # The widest block of 10^k numbers that starts at `start` and fits...
        k = 0
        while start % 10 ** (k + 1) == 0 and start + 10 ** (k + 1) - 1 <= high:
            k += 1
        # ...and as many such blocks as the digit above them allows.
        step, digit, blocks = 10 ** k, (start // 10 ** k) % 10, 1
        while digit + blocks <= 9 and start + (blocks + 1) * step - 1 <= high:
            blocks += 1
        runs.append((start, start + blocks * step - 1, k))
        start += blocks * step
    return runs


def int_range_regex(low: int, high: int) -> str:
    """An anchored regex for the decimal integers low..high (0 <= low <=
    high, no leading zeros)."""
    parts = []
    for first, last, k in _digit_runs(low, high):
        head, a, b = str(first)[:-k - 1], str(first)[-k - 1], str(last)[-k - 1]
        digit = a if a == b else f"[{a}-{b}]"
        tail = "" if k == 0 else "[0-9]" if k == 1 else f"[0-9]{{{k}}}"
        parts.append(head + digit + tail)
    return f"^({'|'.join(parts)})$"


def parameter(action: argparse.Action, required: Set[str] = frozenset()) -> dict:
    name = action.dest
    return {
        "name": name,
        "label": label(name),
        "helpText": help_text(action),
        "isOptional": not (action.required or name in required),
        "regexes": regexes(name, action),
    }


def option_actions(module) -> List[argparse.Action]:
    """The pipeline's own flags, in definition order (shared groups first)."""
    parser = options_parser(module)
    # argparse has no public accessor for a parser's actions.
    return [action for action in parser._actions
            if action.option_strings and action.dest != "help"]


def description(module) -> str:
    first_paragraph = (module.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first_paragraph.split())


def metadata(name: str, module) -> dict:
    return {
        "name": NAMES.get(name, label(name)),
        "description": description(module),
        "parameters": [parameter(action, required_names(module))
                       for action in option_actions(module)],
    }


def render(document: dict) -> str:
    return json.dumps(document, indent=2) + "\n"


def generate() -> Dict[str, str]:
    """file name -> content, for every pipeline."""
    return {f"{name}.json": render(metadata(name, module))
            for name, module in pipeline_modules().items()}


def stale(directory: Path = TEMPLATE_DIR) -> List[str]:
    """What differs between `directory` and the generator: one line each."""
    expected = generate()
    present = {path.name for path in directory.glob("*.json")}
    problems = []
    for file_name, content in sorted(expected.items()):
        path = directory / file_name
        if file_name not in present:
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{path} is out of date")
    for file_name in sorted(present - set(expected)):
        problems.append(f"{directory / file_name} belongs to no pipeline under pipelines/")
    return problems


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="Only report stale or missing files (exit status 1).")
    parser.add_argument("--print", dest="print_name", metavar="PIPELINE", default="",
                        help="Print one pipeline's metadata instead of writing files.")
    parser.add_argument("--directory", default=str(TEMPLATE_DIR), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    if args.print_name:
        documents = generate()
        file_name = f"{args.print_name}.json"
        if file_name not in documents:
            parser.error(f"no pipeline {args.print_name!r}; pipelines: "
                         f"{', '.join(sorted(os.path.splitext(n)[0] for n in documents))}")
        sys.stdout.write(documents[file_name])
        return
    if args.check:
        problems = stale(directory)
        for problem in problems:
            print(problem)
        if problems:
            print(f"regenerate with: {REGENERATE}")
            sys.exit(1)
        return
    for file_name, content in generate().items():
        path = directory / file_name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            print(f"wrote {path}")
    for problem in stale(directory):
        print(f"warning: {problem}")


if __name__ == "__main__":
    main()
