"""Flex Template entry point of the project's container image (see Dockerfile).

Dataflow's Python template launcher runs `python $FLEX_TEMPLATE_PYTHON_PY_FILE`
with the template parameters as `--name=value` arguments. This file is that
program for every template: it runs `pipelines.<KM_PIPELINE>.main(argv)`, where
the environment variable KM_PIPELINE is fixed when an image tag is built
(`docker build --build-arg PIPELINE=train_boosted`), so each template's image
tag always runs its own pipeline and a launch request needs no extra parameter.

The pipeline module is imported, not run as `__main__` (as pointing
FLEX_TEMPLATE_PYTHON_PY_FILE at pipelines/<name>.py would do): functions and
DoFns it pickles must be importable on the workers as `pipelines.<name>.X`.

Workers need this image too (the stock Beam image lacks the project's
modules), so when the launch gives no `--sdk_container_image` the one the image
was built for (KM_SDK_CONTAINER_IMAGE, `--build-arg SDK_CONTAINER_IMAGE=...`)
is added.
"""

import importlib
import os
import re
import sys
from typing import List, Mapping, Optional, Sequence

# The flags Beam accepts for the worker image (the second is the old name).
_IMAGE_FLAGS = ("--sdk_container_image", "--worker_harness_container_image")
_PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class LauncherError(RuntimeError):
    """The image is misconfigured: reported in one line, exit status 2."""


def pipeline_module(environ: Mapping[str, str]) -> str:
    """The module to run, from KM_PIPELINE (a module name under pipelines/)."""
    name = environ.get("KM_PIPELINE", "").strip()
    if not _PIPELINE_NAME.match(name):
        raise LauncherError(
            f"KM_PIPELINE={name!r} does not name a pipeline module; build the image "
            "with --build-arg PIPELINE=<module under pipelines/>")
    return f"pipelines.{name}"


def pipeline_argv(argv: Sequence[str], environ: Mapping[str, str]) -> List[str]:
    """The launch's arguments, plus the worker image when none was given."""
    argv = list(argv)
    image = environ.get("KM_SDK_CONTAINER_IMAGE", "").strip()
    given = any(arg == flag or arg.startswith(flag + "=")
                for arg in argv for flag in _IMAGE_FLAGS)
    if image and not given:
        argv.append(f"--sdk_container_image={image}")
    return argv


def main(argv: Optional[Sequence[str]] = None,
         environ: Optional[Mapping[str, str]] = None) -> None:
    environ = os.environ if environ is None else environ
    argv = sys.argv[1:] if argv is None else argv
    try:
        name = pipeline_module(environ)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name not in (name, "pipelines"):
                raise  # a missing dependency: keep the traceback
            raise LauncherError(f"no pipeline module {name} in this image") from None
        # Booleans arrive as --flag=true/false; argparse wants --flag or nothing.
        from pipelines.flex_template import ArgumentError, flex_template_argv
        try:
            argv = flex_template_argv(pipeline_argv(argv, environ), module.ARGUMENTS)
        except ArgumentError as error:
            raise LauncherError(str(error)) from None
    except LauncherError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    module.main(argv)


if __name__ == "__main__":
    main()
