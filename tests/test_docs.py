"""Every command in README.md and docs/*.md runs, as written, in a copy of the
repository.

A command is a fenced ```sh block. The comment line right above a block can
say how to run it:

    <!-- doc-test: skip: REASON -->   not run (cloud-only, opens a browser ...);
                                      the reason is required and reported
    <!-- doc-test: datastore -->      run against the Datastore emulator
                                      (tests/datastore_emulator.py)

README.md runs first (its tour makes the sample the docs use), then
docs/*.md, two documents at a time, each document's blocks in order, all in
the same copy, one `bash` each. To stay quick
the copy uses a sample of STUDENTS students: `make sample` gets STUDENTS from
the environment and the paths `sample_data/students-2000/` become
`sample_data/students-<STUDENTS>/`; `make` never rebuilds `.venv`, which is
the virtualenv running these tests. Commands must not be written anywhere
else: indented or unmarked code that starts like a command fails the test.
"""

import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md"] + sorted(str(path.relative_to(ROOT))
                                   for path in (ROOT / "docs").glob("*.md"))
STUDENTS = 300
TIMEOUT = 600
MARKER = re.compile(r"^<!-- doc-test: (skip|datastore)(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^```(\S*)\s*$")
SHELL = ("sh", "bash", "shell")
COMMAND_START = re.compile(r"^(\.venv/bin/python|python3? |make |gcloud |bq |docker |"
                           r"for |export |curl )")


@dataclasses.dataclass
class Block:
    document: str
    line: int
    kind: str               # "run", "skip" or "datastore"
    reason: Optional[str]
    code: str

    def __str__(self):
        return f"{self.document}:{self.line}"


def blocks(document: str) -> List[Block]:
    """The fenced shell blocks of a document, with their markers."""
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELL:
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(previous)
            found.append(Block(document, i + 1, marker.group(1) if marker else "run",
                               marker.group(2) if marker else None,
                               "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    return found


def stray_commands(document: str) -> List[str]:
    """Lines that look like commands outside ```sh blocks: indented code,
    and unmarked or ```text fences."""
    problems, inside = [], None
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if fence and inside is None:
            inside = fence.group(1)
            continue
        if line.startswith("```") and inside is not None:
            inside = None
            continue
        if inside in SHELL:
            continue
        code = line[4:] if inside is None and line.startswith("    ") else line
        if (inside is not None or line.startswith("    ")) and COMMAND_START.match(code):
            problems.append(f"{document}:{number}: {line.strip()[:60]}")
    return problems


def _copy_repository(target: Path) -> None:
    """The working tree's files (tracked and new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=False)
    if listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:   # not a git checkout (e.g. an unpacked archive)
        names = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*") if path.is_file()
                 and not {".git", ".venv", "sample_data", "__pycache__"} & set(path.parts)]
    for name in names:
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _fake_venv(target: Path) -> None:
    """`.venv/` in the copy: the virtualenv running the tests, seen through
    links, with `make`'s "installed" stamp newer than setup.py."""
    venv = target / ".venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "bin" / "python").symlink_to(sys.executable)
    for lib in ("lib", "lib64"):
        if (Path(sys.prefix) / lib).exists():
            (venv / lib).symlink_to(Path(sys.prefix) / lib)
    stamp = venv / ".installed"
    stamp.touch()
    later = time.time() + 3600
    os.utime(stamp, (later, later))


def _command(code: str) -> str:
    return code.replace("sample_data/students-2000", f"sample_data/students-{STUDENTS}")


class Workspace:
    """The copy all documents' commands run in, one after the other."""

    def __init__(self, directory: Path, datastore):
        self.directory, self.datastore = directory, datastore
        self.environment = {**os.environ, "STUDENTS": str(STUDENTS), "PYTHONDONTWRITEBYTECODE": "1"}
        for name in ("MAKEFLAGS", "MAKELEVEL", "VIRTUAL_ENV"):
            self.environment.pop(name, None)
        self.skipped: List[str] = []
        self.seconds = {}

    def run(self, document: str) -> None:
        started = time.monotonic()
        for block in blocks(document):
            if block.kind == "skip":
                assert block.reason, f"{block}: a skipped block needs a reason"
                self.skipped.append(f"{block} ({block.reason})")
                continue
            environment = dict(self.environment)
            if block.kind == "datastore":
                if self.datastore is None:
                    self.skipped.append(f"{block} (no Datastore emulator: gcloud missing)")
                    continue
                environment.update(self.datastore.environment())
            result = subprocess.run(["bash", "-c", "set -eo pipefail\n" + _command(block.code)],
                                    cwd=self.directory, env=environment, capture_output=True,
                                    text=True, timeout=TIMEOUT, check=False)
            assert result.returncode == 0, (
                f"{block}: exit status {result.returncode}\n{block.code}\n--- stdout\n"
                f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
        self.seconds[document] = time.monotonic() - started

    def report(self, document: str) -> str:
        skipped = [s for s in self.skipped if s.startswith(document + ":")]
        return (f"{document}: {self.seconds.get(document, 0):.0f} s; skipped: "
                + ("; ".join(skipped) or "none"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request):
    directory = tmp_path_factory.mktemp("docs") / "repository"
    directory.mkdir()
    _copy_repository(directory)
    _fake_venv(directory)
    try:
        datastore = request.getfixturevalue("datastore_emulator")
        datastore.reset()
    except pytest.skip.Exception:
        datastore = None
    return Workspace(directory, datastore)


def test_commands_are_all_in_marked_shell_blocks():
    problems = [problem for document in DOCUMENTS for problem in stray_commands(document)]
    assert not problems, "commands outside ```sh blocks:\n" + "\n".join(problems)
    found = [block for document in DOCUMENTS for block in blocks(document)]
    assert sum(block.kind != "skip" for block in found) >= 10
    for block in found:
        assert block.kind != "skip" or block.reason, f"{block}: a skip needs a reason"


def _anchors(path: Path) -> set:
    """The anchors GitHub gives a document's headings."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


def test_no_document_points_outside_the_repository():
    """Links go to files (and headings) of this repository; the documents
    stand alone."""
    for document in DOCUMENTS:
        text = (ROOT / document).read_text(encoding="utf-8")
        assert "shared/" not in text, document
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)]*))?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path = ROOT / Path(document).parent / target if target else ROOT / document
            assert path.exists(), (document, target)
            if anchor:
                assert anchor in _anchors(path), (document, target, anchor)


def test_the_readme_commands_run(workspace):
    workspace.run("README.md")
    print(workspace.report("README.md"))


def test_the_docs_commands_run(workspace):
    """After the README's tour, the documents are independent (each writes
    its own outputs): two run at a time."""
    if "README.md" not in workspace.seconds:
        workspace.run("README.md")
    documents = DOCUMENTS[1:]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        failures = [str(error) for error in pool.map(_failure, [workspace] * len(documents),
                                                     documents) if error]
    for document in documents:
        print(workspace.report(document))
    assert not failures, "\n\n".join(failures)


def _failure(workspace, document):
    try:
        workspace.run(document)
    except AssertionError as error:
        return error
    return None
