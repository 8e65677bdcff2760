"""--help of every entry point: printed without importing Beam or the heavy
libraries (so it starts in a fraction of a second, which the tests do not
time), complete (every option the entry point accepts, its group, choices and
default, and the module docstring), with the required options in the usage
line. Each --help runs in a fresh interpreter: the test process itself has
imported Beam long ago."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import arguments, monitor, train_boosted, train_knowledge_model
from templates import generate

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ("train_knowledge_model", "train_boosted", "monitor", "generate_sample",
                "model_registry", "launch")
BEAM_ENTRY_POINTS = {"train_knowledge_model": train_knowledge_model,
                     "train_boosted": train_boosted, "monitor": monitor}
# What --help must not import (each takes from a tenth of a second to seconds).
HEAVY = ("apache_beam", "scipy", "pyarrow", "polars", "google.cloud")
# Run as `python -m pipelines.NAME FLAG`, then report the heavy modules it
# loaded (not the interpreter's start-up: site's .pth files import the
# google.cloud namespace package) at exit, after argparse's SystemExit too, as
# the last line of stderr.
PROBE = """
import atexit, json, runpy, sys
heavy, started = {heavy!r}, set(sys.modules)
atexit.register(lambda: print(json.dumps(sorted(
    name for name in set(sys.modules) - started
    if any(name == h or name.startswith(h + ".") for h in heavy))), file=sys.stderr))
sys.argv = ["pipelines.{name}", {flag!r}]
runpy.run_module("pipelines.{name}", run_name="__main__", alter_sys=True)
"""


def help_of(name, flag="--help"):
    """(exit status, stdout, heavy modules imported) of `python -m
    pipelines.NAME FLAG`."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, name=name, flag=flag)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    return result.returncode, result.stdout, loaded


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_imports_no_heavy_library(name, flag):
    status, stdout, loaded = help_of(name, flag)
    assert status == 0
    assert f"python -m pipelines.{name}" in stdout
    assert loaded == []


@pytest.mark.parametrize("name", sorted(BEAM_ENTRY_POINTS))
def test_help_lists_every_option_with_group_choices_and_default(name):
    module = BEAM_ENTRY_POINTS[name]
    _, stdout, _ = help_of(name)
    assert module.__doc__.strip().splitlines()[0] in stdout
    parser = generate.options_parser(module)
    arguments.add_operator_arguments(parser)
    for group in parser._action_groups:  # argparse has no public accessor
        if group._group_actions:
            assert f"\n{group.title}:\n" in stdout, group.title
    unwrapped = "".join(stdout.split())  # argparse wraps long defaults mid-word
    for action in parser._actions:
        assert action.option_strings[0] in stdout, action.option_strings
        if action.choices:
            assert "{" + ",".join(map(str, action.choices)) + "}" in stdout, action.dest
        if action.default not in ("", None, False):
            assert f"(default:{action.default})" in unwrapped, action.dest


def test_the_shared_option_groups_in_the_help():
    """By hand: what each entry point's help holds, and does not."""
    helps = {name: help_of(name)[1] for name in BEAM_ENTRY_POINTS}
    for name in BEAM_ENTRY_POINTS:
        for shown in ("input and output:", "BigQuery input:", "date window:",
                      "progress and logging:", "--input_format {auto,avro,json,csv,parquet}",
                      "Beam options are accepted as well"):
            assert shown in helps[name], (name, shown)
    assert "training:" in helps["train_knowledge_model"] and "training:" in helps["train_boosted"]
    assert "--seed" not in helps["monitor"] and "--overwrite" not in helps["monitor"]
    assert "--num_random_features" not in helps["train_boosted"]
    assert "--iterations ITERATIONS" not in helps["train_knowledge_model"]
    assert "--params PARAMS" in helps["monitor"]
    assert "--loss {logistic,exponential}" in helps["train_boosted"]


INPUT = ("    (--input INPUT\n"
         "     | --input_query INPUT_QUERY --bq_temp_dataset BQ_TEMP_DATASET\n"
         "     | --bq_project BQ_PROJECT --bq_dataset BQ_DATASET --bq_table BQ_TABLE)\n")


@pytest.mark.parametrize("name, usage", [
    ("train_knowledge_model", "usage: python -m pipelines.train_knowledge_model\n" + INPUT
     + "    --output OUTPUT [OPTION ...]\n"),
    ("monitor", "usage: python -m pipelines.monitor\n" + INPUT
     + "    --output OUTPUT --params PARAMS [OPTION ...]\n"),
    # Its input only builds the store: not required.
    ("train_boosted", "usage: python -m pipelines.train_boosted --output OUTPUT [OPTION ...]\n"),
])
def test_usage_line_shows_the_required_options(name, usage):
    assert help_of(name)[1].startswith(usage + "\n")


@pytest.mark.parametrize("module, argv", [
    (train_knowledge_model, ["--output", "out"]),
    (monitor, ["--output", "out", "--params", "model"]),
])
def test_without_input_the_run_stops_with_the_same_message(module, argv, capsys):
    with pytest.raises(SystemExit) as exited:
        module.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: --input (a file glob or bq://project.dataset.table) is required\n")
