"""Numeric option rules, stated once as argparse types (pipelines.option_types):
the types themselves, and that every entry point refuses a bad value while
parsing, with exit status 2 and one line naming the option."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import monitor, train_boosted, train_knowledge_model
from pipelines.cli import UsageError
from pipelines.jobs.train_knowledge_model import KnowledgeModelOptions
from pipelines.option_types import (IntBetween, fraction_in_0_1, non_negative_float,
                                    non_negative_int, positive_float, positive_int)
from pipelines.options import checked_options

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("option_type, text, value", [
    (positive_int, "1", 1), (positive_int, "250", 250), (positive_int, "+3", 3),
    (non_negative_int, "0", 0), (non_negative_int, "28", 28),
    (fraction_in_0_1, "0", 0.0), (fraction_in_0_1, "0.1", 0.1), (fraction_in_0_1, ".5", 0.5),
    (fraction_in_0_1, "0.999", 0.999), (fraction_in_0_1, "1e-3", 0.001),
    (non_negative_float, "0", 0.0), (non_negative_float, "30", 30.0),
    (non_negative_float, "1e-3", 0.001),
    (positive_float, "0.5", 0.5), (positive_float, "2", 2.0),
    (IntBetween(1, 500), "1", 1), (IntBetween(1, 500), "500", 500),
])
def test_accepted_values(option_type, text, value):
    assert option_type(text) == value


@pytest.mark.parametrize("option_type, text, message", [
    (positive_int, "0", "must be at least 1, got 0"),
    (positive_int, "-2", "must be at least 1, got -2"),
    (positive_int, "1.5", "'1.5' is not an integer"),
    (positive_int, "ten", "'ten' is not an integer"),
    (positive_int, "1_000", "is not an integer"),
    (positive_int, " 7", "is not an integer"),
    (positive_int, "", "is not an integer"),
    (non_negative_int, "-1", "must be >= 0, got -1"),
    (fraction_in_0_1, "1", r"must be in \[0, 1\), got 1"),
    (fraction_in_0_1, "-0.1", r"must be in \[0, 1\), got -0.1"),
    (fraction_in_0_1, "nan", "'nan' is not a number"),
    (non_negative_float, "-1", "must be >= 0, got -1"),
    (non_negative_float, "inf", "is not a number"),
    (non_negative_float, "1e999", "is not a finite number"),
    (non_negative_float, "1,5", "is not a number"),
    (positive_float, "0", "must be > 0, got 0"),
    (IntBetween(1, 500), "0", r"must be in 1\.\.500, got 0"),
    (IntBetween(1, 500), "501", r"must be in 1\.\.500, got 501"),
])
def test_refused_values_say_why(option_type, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        option_type(text)


def test_argparse_names_the_option():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--min_samples", type=positive_int, default=30)
    assert parser.parse_args([]).min_samples == 30
    assert parser.parse_args(["--min_samples=5"]).min_samples == 5
    with pytest.raises(argparse.ArgumentError, match="--min_samples: must be at least 1"):
        parser.parse_args(["--min_samples", "0"])


@pytest.mark.parametrize("entry_point, argv, message", [
    (train_knowledge_model, ["--min_samples", "0"], "--min_samples: must be at least 1, got 0"),
    (train_knowledge_model, ["--min_samples=ten"], "--min_samples: 'ten' is not an integer"),
    (train_knowledge_model, ["--holdout_fraction", "1.5"],
     r"--holdout_fraction: must be in \[0, 1\), got 1.5"),
    (train_knowledge_model, ["--l2", "-1"], "--l2: must be >= 0, got -1"),
    (train_knowledge_model, ["--datastore_batch_size", "501"],
     r"--datastore_batch_size: must be in 1\.\.500"),
    (train_knowledge_model, ["--window_days", "-1"], "--window_days: must be >= 0"),
    (train_knowledge_model, ["--history_days", "-3"], "--history_days: must be >= 0"),
    (train_knowledge_model, ["--seed", "-1"], "--seed: must be >= 0"),
    (monitor, ["--trailing_days", "-1"], "--trailing_days: must be >= 0"),
    (train_boosted, ["--iterations", "0"], "--iterations: must be at least 1"),
    (train_boosted, ["--initial_step", "0"], "--initial_step: must be > 0"),
    (train_knowledge_model, ["--min_samples"], "--min_samples: expected one argument"),
    (monitor, ["--progress", "sometimes"], "--progress: invalid choice"),
])
def test_checked_options_refuse_bad_values_naming_the_option(entry_point, argv, message):
    with pytest.raises(UsageError, match=f"^{message}"):
        checked_options(["--output", "out"] + argv, entry_point.ARGUMENTS)


def test_checked_options_parse_good_values():
    options = checked_options(["--min_samples", "5", "--holdout_fraction", "0.2"],
                              train_knowledge_model.ARGUMENTS)
    view = options.view_as(KnowledgeModelOptions)
    assert (view.min_samples, view.holdout_fraction) == (5, 0.2)


@pytest.mark.parametrize("module, argv, option", [
    ("train_knowledge_model", ["--input", "x", "--output", "y", "--min_samples", "0"],
     "--min_samples"),
    ("monitor", ["--input", "x", "--output", "y", "--params", "p", "--trailing_days", "-1"],
     "--trailing_days"),
    ("train_boosted", ["--input", "x", "--output", "y", "--iterations", "0"], "--iterations"),
])
def test_entry_points_exit_2_with_one_line_naming_the_option(module, argv, option):
    result = subprocess.run([sys.executable, "-m", f"pipelines.{module}", *argv], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}: "), result.stderr
