"""The setup.py package works for Dataflow workers: an sdist built from a fresh
clone installs into a clean virtualenv and the pipelines import from it.

What is built: `git clone` of the repository's HEAD into a temporary
directory, with the working tree's uncommitted changes laid over it (tracked
files as they are now, untracked files that git does not ignore, deletions) -
i.e. what the next commit will hold, and nothing git ignores (.venv, build/,
*.egg-info, outputs). On a clean checkout, as in CI, that is exactly HEAD.
The sdist is built with `python -m build --sdist` when the `build` package is
installed, otherwise with `python setup.py sdist`.

How it is installed, and why that is an honest check in seconds: the sdist is
built into a wheel (`pip wheel --no-deps`, proving it builds on its own), and
the wheel is installed with `pip --python <clean venv> install --no-deps
--no-index` into a virtualenv created with `python -m venv` (no system site
packages, nothing else installed). The third-party dependencies are not
downloaded again (apache-beam[gcp] is a ~1 GB, minute-long install): a `.pth`
file puts this project's .venv site-packages after the clean venv's own. The
project's modules are not in that directory (asserted; its editable install
there is a .pth file, which Python does not run outside site directories), and
the import test checks that every module file comes from the installed wheel.
What the shortcut skips, dependency resolution, is covered by `pip check` in
the clean venv: every requirement of the installed package (setup.py's
install_requires, with the apache-beam[gcp] extra) must be satisfied by the
versions present. A full install from the package index, `pip install
--constraint requirements-lock.txt <sdist>` (the Dockerfile's command), runs
when KM_TEST_FULL_INSTALL=1 (minutes, network).

Then, from a directory outside the repository and with `python -I` (no
PYTHONPATH, no user site, no current directory on sys.path), the pipelines'
modules import, every module file lies in the clean venv's site-packages, and
`python -m pipelines.train_knowledge_model --help` works.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "dashboard", "transforms", "pipelines")
# Package data (not modules) the installed package needs.
PACKAGE_DATA = ("dashboard/templates/dashboard.html", "dashboard/templates/dashboard.css",
                "dashboard/templates/dashboard.js")
DISTRIBUTION = "knowledge-model-pipelines"
IMPORTS = ("pipelines.train_knowledge_model", "pipelines.train_boosted", "pipelines.monitor",
           "pipelines.jobs.train_knowledge_model", "pipelines.jobs.train_boosted",
           "pipelines.jobs.monitor", "transforms.read", "models.knowledge_state", "dashboard")
FORBIDDEN_IN_SDIST = ("tests/", "benchmarks/", ".venv/", ".git/", "sample_data/", "container/")


def run(command, cwd, env=None, timeout=300):
    started = time.monotonic()
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    result.seconds = time.monotonic() - started
    return result


def git_files(repository, *paths):
    """Files a commit of the working tree would hold (tracked or untracked and
    not ignored, present on disk)."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                  "--", *paths], cwd=repository).stdout.split("\0")
    return sorted(path for path in listed if path and (Path(repository) / path).is_file())


def clone_with_working_tree(destination: Path) -> Path:
    run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, destination], cwd=ROOT.parent)
    present = set(git_files(ROOT))
    for path in present:
        target = destination / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    for path in git_files(destination):
        if path not in present:  # deleted in the working tree
            (destination / path).unlink()
    return destination


def clean_environment():
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """(sdist path, the source tree it was built from)."""
    work = tmp_path_factory.mktemp("packaging")
    source = clone_with_working_tree(work / "clone")
    dist = work / "dist"
    try:
        import build  # noqa: F401
        command = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist]
    except ImportError:
        command = [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", dist]
    run(command, cwd=source, env=clean_environment())
    archives = list(dist.glob("*.tar.gz"))
    assert len(archives) == 1, archives
    return archives[0], source


def test_sdist_holds_every_module_and_nothing_else(sdist):
    archive, source = sdist
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    inside = {name[len(top) + 1:] for name in names if name.startswith(top + "/")}
    modules = [path for path in git_files(source, *PACKAGES) if path.endswith(".py")]
    assert modules and all(path.split("/")[0] in PACKAGES for path in modules)
    missing = sorted((set(modules) | set(PACKAGE_DATA)) - inside)
    assert not missing, f"modules missing from {archive.name}: {missing}"
    assert "setup.py" in inside
    unwanted = sorted(name for name in inside
                      if name.startswith(FORBIDDEN_IN_SDIST) or name.endswith(".pyc"))
    assert not unwanted, f"{archive.name} holds {unwanted}"


@pytest.fixture(scope="module")
def clean_venv(sdist, tmp_path_factory):
    """A venv with the package installed from the sdist (see the module doc)."""
    archive, _ = sdist
    work = tmp_path_factory.mktemp("install")
    wheels = work / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", wheels, archive], cwd=work, env=clean_environment())
    (wheel,) = wheels.glob("*.whl")

    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    site_packages = Path(run([python, "-I", "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=work).stdout.strip())
    dependencies = Path(sysconfig.get_paths()["purelib"])
    # The dependency directory must not provide the project's modules. The
    # development venv's editable install of the project (its dist-info and
    # __editable__ .pth) is inert there: Python runs .pth files only in site
    # directories, the clean venv's own site-packages comes first on sys.path,
    # and the import test asserts every module file lies in the clean venv.
    for package in PACKAGES:
        assert not (dependencies / package).exists(), dependencies / package
    (site_packages / "_test_dependencies.pth").write_text(f"{dependencies}\n")

    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", wheel], cwd=work, env=clean_environment())
    return python, site_packages, work


def test_requirements_of_the_installed_package_are_met(clean_venv):
    python, _, work = clean_venv
    result = run([sys.executable, "-m", "pip", "--python", python, "check"], cwd=work,
                 env=clean_environment())
    assert "No broken requirements" in result.stdout
    requirements = run([python, "-I", "-c",
                        f"import importlib.metadata as m; "
                        f"print('\\n'.join(m.requires({DISTRIBUTION!r})))"],
                       cwd=work).stdout.split("\n")
    assert any(line.startswith("apache-beam[gcp]==") for line in requirements), requirements


def test_pipelines_import_from_site_packages_outside_the_repository(clean_venv, sdist):
    python, site_packages, work = clean_venv
    _, source = sdist
    outside = work / "elsewhere"
    outside.mkdir()
    code = ("import importlib, json, sys; "
            f"modules = {IMPORTS!r}; "
            "[importlib.import_module(name) for name in modules]; "
            "print(json.dumps({name: sys.modules[name].__file__ for name in modules "
            f"+ {PACKAGES!r}}}))")
    files = json.loads(run([python, "-I", "-c", code], cwd=outside,
                           env=clean_environment()).stdout.strip().splitlines()[-1])
    for name, path in files.items():
        path = Path(path).resolve()
        assert path.is_relative_to(site_packages.resolve()), f"{name} imported from {path}"
        assert not path.is_relative_to(ROOT) and not path.is_relative_to(source.resolve())

    result = run([python, "-I", "-m", "pipelines.train_knowledge_model", "--help"],
                 cwd=outside, env=clean_environment())
    assert "--input" in result.stdout

    # The dashboard's template and script (package data) come with the wheel.
    code = ("from dashboard import render_dashboard; "
            "print(render_dashboard([{'date': '2026-11-01', 'exercise': 'a', 'samples': 5, "
            "'mean_log_likelihood': -0.5}]))")
    page = run([python, "-I", "-c", code], cwd=outside, env=clean_environment()).stdout
    assert page.startswith("<!DOCTYPE html>") and "vegaEmbed" in page and 'data-chart="ll"' in page


@pytest.mark.skipif(os.environ.get("KM_TEST_FULL_INSTALL") != "1",
                    reason="set KM_TEST_FULL_INSTALL=1 to install every dependency from "
                           "the package index (minutes, network)")
def test_full_install_from_the_index(sdist, tmp_path):
    """The Dockerfile's command: install_requires pinned by the lock file."""
    archive, source = sdist
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--constraint",
         source / "requirements-lock.txt", archive], cwd=tmp_path, env=clean_environment(),
        timeout=1800)
    run([python, "-m", "pip", "check"], cwd=tmp_path, env=clean_environment())
    run([python, "-I", "-c", "import " + ", ".join(IMPORTS)], cwd=tmp_path,
        env=clean_environment())
    freeze = run([python, "-m", "pip", "freeze"], cwd=tmp_path).stdout
    assert "pytest==" not in freeze and "hadolint" not in freeze.lower()
