"""Flex Template metadata (templates/<pipeline>.json) agrees with the pipelines'
options, and is what templates/generate.py produces from them now."""

import argparse
import difflib
import importlib
import json
import re

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import option_types
from pipelines.flex_template import flex_template_argv, is_boolean
from templates import generate

PIPELINES = generate.pipeline_modules()
UNIVERSAL_BAD = ("", " ", "bad value; rm -rf /")
DATE_NAMES = {"start_date", "end_date", "run_date"}
GCS_DIRECTORY_NAMES = {"output", "store", "training_rows_output"}
# Values a numeric type must refuse, besides wrong-kind ones, by type.
OUT_OF_RANGE = {
    option_types.positive_int: ["0", "-1"],
    option_types.non_negative_int: ["-1"],
    option_types.fraction_in_0_1: ["1", "1.5", "-0.5"],
    option_types.non_negative_float: ["-1", "-0.5"],
    option_types.positive_float: ["0", "0.0", "-1"],
}
# Text in canonical form (what a person types), for checking that a type and
# its template regex accept exactly the same values.
NUMBERS = ["0", "1", "2", "7", "10", "30", "99", "100", "499", "500", "501", "1000", "100000",
           "-1", "-7", "0.0", "0.5", "0.25", ".5", "1.0", "1.5", "2.5", "30.0", "1e-3", "1e3",
           "-0.5", "ten", "1,5", "nan", "inf", "1_000", "", " "]


def job(name):
    """The pipeline's Beam job module (pipelines.jobs)."""
    return importlib.import_module(f"pipelines.jobs.{name}")


def options_class(name):
    """The PipelineOptions class the pipeline's Beam job views its options
    as (its job module's own)."""
    (cls,) = [value for value in vars(job(name)).values()
              if isinstance(value, type) and issubclass(value, PipelineOptions)
              and value.__module__ == job(name).__name__]
    return cls


def load(name):
    with open(generate.TEMPLATE_DIR / f"{name}.json", encoding="utf-8") as handle:
        return json.load(handle)


def actions(module):
    return {action.dest: action for action in generate.option_actions(module)}


def matches(parameter, value):
    return all(re.search(regex, value) for regex in parameter["regexes"])


def bad_values(name, action):
    """Values the parameter must refuse: nonsense for every parameter, plus
    values of the wrong type or format for its kind."""
    values = list(UNIVERSAL_BAD)
    if is_boolean(action):
        values += ["yes", "1", "True1"]
    elif action.choices:
        values += ["not-a-choice"]
    elif action.type in (int, option_types.positive_int, option_types.non_negative_int) or (
            isinstance(action.type, option_types.IntBetween)):
        values += ["1.5", "ten", "1e3"]
    elif action.type in (float, option_types.fraction_in_0_1, option_types.non_negative_float,
                         option_types.positive_float):
        values += ["ten", "1,5", "--1", "nan", "inf"]
    values += OUT_OF_RANGE.get(action.type, [])
    if isinstance(action.type, option_types.IntBetween):
        values += [str(action.type.low - 1), str(action.type.high + 1)]
    if name in DATE_NAMES:
        values += ["2026-13-01", "20260101", "yesterday"]
    if name in GCS_DIRECTORY_NAMES:
        values += ["/local/dir", "s3://bucket/dir", "gs://"]
    if name == "input":
        values += ["logs/*.avro", "bq://project-only", "gs://bucket"]
    return values


def _accepts(option_type, text):
    try:
        option_type(text)
    except argparse.ArgumentTypeError:
        return False
    return True


def test_checked_in_metadata_is_what_the_generator_produces():
    problems = generate.stale()
    diffs = []
    for file_name, content in generate.generate().items():
        path = generate.TEMPLATE_DIR / file_name
        if path.exists():
            diffs += difflib.unified_diff(path.read_text(encoding="utf-8").splitlines(),
                                          content.splitlines(), str(path), "generated",
                                          lineterm="", n=1)
    assert not problems, (
        "templates/ is out of step with the pipelines' options:\n  " + "\n  ".join(problems)
        + f"\nRegenerate with `{generate.REGENERATE}` and commit templates/*.json.\n"
        + "\n".join(diffs[:60]))


def test_every_pipeline_has_metadata():
    assert {"train_knowledge_model", "train_boosted"} <= set(PIPELINES)
    for name in PIPELINES:
        assert (generate.TEMPLATE_DIR / f"{name}.json").exists(), name


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_template_fields(name):
    document = load(name)
    assert set(document) == {"name", "description", "parameters"}
    assert document["name"] and document["description"]
    for parameter in document["parameters"]:
        assert set(parameter) == {"name", "label", "helpText", "isOptional", "regexes"}
        assert re.fullmatch(r"[a-z][a-z0-9_]*", parameter["name"])
        assert parameter["label"] and parameter["helpText"], parameter["name"]
        assert isinstance(parameter["isOptional"], bool)
        assert parameter["regexes"], parameter["name"]
        for regex in parameter["regexes"]:
            re.compile(regex)
            # Anchored, so Dataflow's check covers the whole value.
            assert regex.startswith(("^", "(?i)^")) and regex.endswith("$"), regex


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_parameters_are_exactly_the_pipeline_options(name):
    declared = [parameter["name"] for parameter in load(name)["parameters"]]
    defined = list(actions(PIPELINES[name]))
    assert len(declared) == len(set(declared)), "a parameter is declared twice"
    missing, extra = set(defined) - set(declared), set(declared) - set(defined)
    assert not missing and not extra, (
        f"options without a template parameter: {sorted(missing)}; parameters that are "
        f"no option: {sorted(extra)}; regenerate with `{generate.REGENERATE}`")
    # Each parameter is an option of the view the pipeline's job reads, and
    # the view has no other.
    view = PipelineOptions([]).view_as(options_class(name))
    assert set(dir(view)) - set(dir(PipelineOptions([]))) == set(declared)


def _beam_option_names():
    names = set()
    for cls in PipelineOptions.__subclasses__():
        if cls.__module__.startswith("apache_beam."):
            parser = argparse.ArgumentParser(add_help=False)
            cls._add_argparse_args(parser)
            names |= {action.dest for action in parser._actions}
    return names


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_no_generic_beam_option_is_a_parameter(name):
    beam_options = _beam_option_names()
    assert {"runner", "project", "temp_location", "job_name"} <= beam_options
    declared = {parameter["name"] for parameter in load(name)["parameters"]}
    assert not declared & beam_options


def _complete_argv(module, leave_out):
    """Values for the required parameters, except `leave_out`."""
    values = {"output": "gs://bucket/out", "params": "gs://bucket/params"}
    return [f"--{required}={values[required]}"
            for required, action in actions(module).items()
            if (action.required or required in generate.required_names(module))
            and required != leave_out]


def _validate(name, argv):
    """The pipeline's own check of its command line, without running it."""
    if hasattr(job(name), "validate"):
        return job(name).validate(PipelineOptions(argv).view_as(options_class(name)))
    return job(name).run(argv)  # train_boosted checks its options first thing


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_required_parameters_are_the_ones_the_pipeline_requires(name):
    module = PIPELINES[name]
    required = [p["name"] for p in load(name)["parameters"] if not p["isOptional"]]
    assert "output" in required
    for parameter in required:
        with pytest.raises(ValueError, match=f"--{parameter}"):
            _validate(name, _complete_argv(module, leave_out=parameter))


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_regexes_accept_defaults_and_reject_bad_values(name):
    defined = actions(PIPELINES[name])
    for parameter in load(name)["parameters"]:
        action = defined[parameter["name"]]
        default = generate.default_text(action)
        if default:
            assert matches(parameter, default), (parameter["name"], default)
        for bad in bad_values(parameter["name"], action):
            assert not matches(parameter, bad), (parameter["name"], bad)


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_numeric_regexes_accept_what_the_option_type_accepts(name):
    """Each range rule is stated once, as the option's type; the template's
    regex is derived from it and agrees with it on numbers as people type them."""
    defined = actions(PIPELINES[name])
    checked = 0
    for parameter in load(name)["parameters"]:
        option_type = defined[parameter["name"]].type
        if option_type not in generate.TYPE_REGEXES and not isinstance(
                option_type, option_types.IntBetween):
            continue
        checked += 1
        for text in NUMBERS:
            assert matches(parameter, text) == _accepts(option_type, text), (
                parameter["name"], text)
    assert checked >= 5


def test_the_range_regex_is_exactly_the_range():
    for low, high in [(1, 500), (0, 0), (0, 9), (1, 10), (7, 123), (99, 101), (250, 7000)]:
        regex = generate.int_range_regex(low, high)
        assert [value for value in range(10000) if re.search(regex, str(value))] == list(
            range(low, min(high, 9999) + 1)), regex
        assert not re.search(regex, f"0{low}") and not re.search(regex, f"-{low}")
    assert generate.int_range_regex(1, 500) == r"^([1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$"


@pytest.mark.parametrize("name,good", [
    ("input", "gs://my-bucket/export/*.avro"), ("input", "bq://my-project.logs.problem_logs"),
    ("input", "bq://my-project:logs.problem_logs"), ("output", "gs://my-bucket/runs/nightly/"),
    ("column_mapping", "user=student_id,exercise=skill,time_done=timestamp"),
    ("problem_number_range", "1,6"), ("start_date", "2026-11-01"), ("window_days", "30"),
    ("bq_temp_dataset", "my-project.tmp"), ("input_query", "SELECT * FROM t"),
    ("model_version", "20261123T002000Z"), ("holdout_fraction", "0.25"), ("l2", "1e-3"),
    ("overwrite", "true"), ("overwrite", "false"), ("params_sink", "datastore"),
])
def test_regexes_accept_real_values(name, good):
    parameter = next(p for p in load("train_knowledge_model")["parameters"] if p["name"] == name)
    assert matches(parameter, good)


def test_boosted_list_parameters():
    parameters = {p["name"]: p for p in load("train_boosted")["parameters"]}
    assert matches(parameters["templates"], "exercise,exercise_x_streak")
    assert not matches(parameters["templates"], "exercise,no_such_template")
    assert matches(parameters["l1"], "0.1,1,10")
    assert not matches(parameters["l1"], "0.1,,1")
    assert matches(parameters["rebuild_store"], "true")


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_boolean_parameters_work_the_way_the_launcher_passes_them(name):
    """Flex Templates pass --name=true; after flex_template_argv Beam parses it."""
    for parameter in load(name)["parameters"]:
        if parameter["regexes"] != [generate.BOOLEAN]:
            continue
        for value, expected in (("true", True), ("false", False)):
            argv = flex_template_argv([f"--{parameter['name']}={value}"],
                                      PIPELINES[name].ARGUMENTS)
            options = PipelineOptions(argv).view_as(options_class(name))
            assert getattr(options, parameter["name"]) is expected


def test_a_string_option_without_a_regex_is_an_error():
    parser = argparse.ArgumentParser()
    action = parser.add_argument("--brand_new_option", default="")
    with pytest.raises(generate.MetadataError, match="brand_new_option.*REGEXES"):
        generate.parameter(action)


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    for file_name, content in generate.generate().items():
        (tmp_path / file_name).write_text(content, encoding="utf-8")
    generate.main(["--check", "--directory", str(tmp_path)])
    first = sorted(tmp_path.glob("*.json"))[0]
    first.write_text("{}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        generate.main(["--check", "--directory", str(tmp_path)])
    assert exit_info.value.code == 1
    assert f"{first} is out of date" in capsys.readouterr().out
