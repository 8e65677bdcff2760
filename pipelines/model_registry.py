"""Operate the model versions that training wrote to Datastore.

    python -m pipelines.model_registry --project P [--namespace N] list
    python -m pipelines.model_registry --project P show VERSION
    python -m pipelines.model_registry --project P activate VERSION
    python -m pipelines.model_registry --project P rollback

`list` shows every completely written version, newest first, and marks the
active one. `activate` points serving at a complete version; `rollback`
re-activates the version that was active before the current one. Only
versions whose every entity was written can be activated.

The project defaults to $DATASTORE_PROJECT_ID or $GOOGLE_CLOUD_PROJECT; with
$DATASTORE_EMULATOR_HOST set it talks to the emulator.
"""

import argparse
import datetime
import json
import os
import sys

from models.param_store import ModelNotFound, Registry
from pipelines import cli


def _parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m pipelines.model_registry", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=os.environ.get("DATASTORE_PROJECT_ID")
                        or os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
                        help="Datastore project (default: $DATASTORE_PROJECT_ID, then "
                             "$GOOGLE_CLOUD_PROJECT).")
    parser.add_argument("--namespace", default="",
                        help="Datastore namespace the training run wrote to (default: the "
                             "default namespace).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="Complete versions, newest first; '*' marks the active.")
    show = commands.add_parser("show", help="A version's settings and counts, as JSON.")
    show.add_argument("version")
    activate = commands.add_parser("activate", help="Make a complete version the active one.")
    activate.add_argument("version")
    commands.add_parser("rollback", help="Re-activate the previously active version.")
    return parser


def _json_default(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _format_list(versions, active) -> str:
    if not versions:
        return "no model versions"
    lines = [f"  {'version':<24} {'written_at':<26} {'exercises':>9} {'components':>10}"]
    for version in versions:
        marker = "*" if version["model_version"] == active else " "
        lines.append(f"{marker} {version['model_version']:<24} "
                     f"{version['written_at'].isoformat(timespec='seconds'):<26} "
                     f"{version['num_exercises']:>9} {version['num_components']:>10}")
    return "\n".join(lines)


def run(argv=None, registry=None) -> str:
    """Execute one command; returns what it prints."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.project and registry is None:
        parser.error("--project is required (or set $DATASTORE_PROJECT_ID)")
    registry = registry or Registry(args.project, args.namespace)
    if args.command == "list":
        return _format_list(registry.versions(), registry.active_version())
    if args.command == "show":
        version = registry.version(args.version)
        version["active"] = registry.active_version() == args.version
        return json.dumps(version, indent=2, sort_keys=True, default=_json_default)
    before = registry.active_version()
    pointer = (registry.activate(args.version) if args.command == "activate"
               else registry.rollback())
    return f"active version: {before!r} -> {pointer['version']!r}"


def main(argv=None):
    try:
        print(run(argv))
    except ModelNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
