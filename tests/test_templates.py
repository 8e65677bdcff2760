"""Flex Template metadata (templates/<pipeline>.json) agrees with the pipelines'
options, and is what templates/generate.py produces from them now."""

import argparse
import difflib
import json
import re

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.flex_template import flex_template_argv, is_boolean
from templates import generate

PIPELINES = generate.pipeline_modules()
UNIVERSAL_BAD = ("", " ", "bad value; rm -rf /")
DATE_NAMES = {"start_date", "end_date", "run_date"}
GCS_DIRECTORY_NAMES = {"output", "store", "training_rows_output"}


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
    elif action.type is int:
        values += ["1.5", "ten", "1e3"]
        values += ["0"] if name in generate.POSITIVE_INTS else []
        values += ["-1"] if name in generate.NON_NEGATIVE_INTS | generate.POSITIVE_INTS else []
    elif action.type is float:
        values += ["ten", "1,5", "--1"]
    if name in DATE_NAMES:
        values += ["2026-13-01", "20260101", "yesterday"]
    if name in GCS_DIRECTORY_NAMES:
        values += ["/local/dir", "s3://bucket/dir", "gs://"]
    if name == "input":
        values += ["logs/*.avro", "bq://project-only", "gs://bucket"]
    if name == "holdout_fraction":
        values += ["1", "1.5"]
    if name == "initial_step":
        values += ["0", "0.0"]
    if name == "datastore_batch_size":
        values += ["0", "501"]
    return values


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
    # Each parameter is a flag Beam parses into the pipeline's options.
    parsed = PipelineOptions([]).get_all_options()
    assert set(declared) <= set(parsed)


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
            if (action.required or required in generate.REQUIRED) and required != leave_out]


def _validate(module, argv):
    """The pipeline's own check of its command line, without running it."""
    if hasattr(module, "validate"):
        classes = generate.own_options_classes(module)
        return module.validate(PipelineOptions(argv).view_as(classes[0]))
    return module.run(argv)  # train_boosted checks its options first thing


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_required_parameters_are_the_ones_the_pipeline_requires(name):
    module = PIPELINES[name]
    required = [p["name"] for p in load(name)["parameters"] if not p["isOptional"]]
    assert "output" in required
    for parameter in required:
        with pytest.raises(ValueError, match=f"--{parameter}"):
            _validate(module, _complete_argv(module, leave_out=parameter))


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
    classes = generate.own_options_classes(PIPELINES[name])
    for parameter in load(name)["parameters"]:
        if parameter["regexes"] != [generate.BOOLEAN]:
            continue
        for value, expected in (("true", True), ("false", False)):
            argv = flex_template_argv([f"--{parameter['name']}={value}"])
            options = PipelineOptions(argv).view_as(classes[0])
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
