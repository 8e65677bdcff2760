"""What Dataflow's Flex Template launcher passes to a pipeline, made parseable.

The launcher (container/launcher.py runs in the image) passes every template
parameter as --name=value, booleans as --name=true / --name=false. argparse
rejects a value after a store_true flag ("ignored explicit argument"), so the
arguments are rewritten first: --overwrite=true -> --overwrite,
--overwrite=false -> nothing. This is the run-time half of deploying; the
deploy tool (the launch request, the Cloud Scheduler job) is pipelines.launch.
"""

import argparse
from typing import Dict, List, Sequence

from pipelines.options import accepted_options_parser

TRUE, FALSE = "true", "false"


class ArgumentError(ValueError):
    """A boolean parameter with a value other than true or false."""


def is_boolean(action: argparse.Action) -> bool:
    """A flag (store_true/store_false), or an option whose value is optional
    and stands for True when left out (nargs='?', const=True)."""
    return action.nargs == 0 or (action.nargs == "?" and action.const is True)


def _flag_actions(option_groups) -> Dict[str, argparse.Action]:
    """Every flag taking no value that the entry point of `option_groups`
    (its ARGUMENTS) accepts, Beam's included, by option string."""
    # argparse has no public accessor for a parser's actions; `_actions` is
    # the attribute argparse itself reads (format_help, parse_args).
    actions = accepted_options_parser(option_groups)._actions
    return {option: action for action in actions if action.dest != "help"
            for option in action.option_strings if action.nargs == 0}


def flex_template_argv(argv: Sequence[str], option_groups) -> List[str]:
    """The launcher's arguments with boolean flags rewritten for argparse, for
    the entry point of `option_groups` (its ARGUMENTS).

    '--flag=true' (or '--flag true') becomes '--flag', '--flag=false' is
    dropped; anything else after a flag is an ArgumentError."""
    flags = _flag_actions(option_groups)
    argv = list(argv)
    result, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, sep, value = arg.partition("=")
        if name in flags and sep:
            consumed = 1
        elif arg in flags and i + 1 < len(argv) and argv[i + 1].lower() in (TRUE, FALSE):
            value, consumed = argv[i + 1], 2
        else:
            result.append(arg)
            i += 1
            continue
        if value.lower() not in (TRUE, FALSE):
            raise ArgumentError(f"{name} takes true or false, got {value!r}")
        if value.lower() == TRUE:
            result.append(name)
        i += consumed
    return result
