"""The command line of every entry point, without Beam (so --help and the
small tools start quickly): strict parsing, where an argument that no option
accepts stops the command with exit status 2, naming it and the closest
valid option; and command_line(), the main() of the Beam entry points, which
prints --help from pipelines.arguments and imports Beam only to run."""

import argparse
import difflib
import logging
import sys
from typing import Iterable, List

from pipelines.arguments import add_operator_arguments

# The project's own loggers; everything else (Beam, Google clients) is "theirs".
OWN_LOGGERS = ("pipelines", "transforms", "models", "dashboard", "container", "__main__")


class UsageError(ValueError):
    """A problem with the command line, reported without a traceback."""


class JobFailed(RuntimeError):
    """The job ran but its result must not count as a success (e.g. nothing
    was trained): reported without a traceback, exit status 1."""


def leftover_problems(leftovers: Iterable[str], known_options: List[str]) -> List[str]:
    """One message per argument a parser could not place: an unknown option
    (with the closest known one), or a stray value that follows no option."""
    problems, after_option = [], False
    for arg in leftovers:
        if arg.startswith("-") and arg != "-":
            name = arg.split("=", 1)[0]
            spelled = "--" + name.lstrip("-").replace("-", "_")
            close = difflib.get_close_matches(spelled, known_options, n=1, cutoff=0.7)
            problems.append(f"unknown option {name}"
                            + (f" (did you mean {close[0]}?)" if close else ""))
            after_option = "=" not in arg
        elif after_option:
            after_option = False  # the value of the unknown option just named
        else:
            problems.append(f"unexpected argument {arg!r} (an unquoted file glob? quote "
                            f"the pattern so the shell does not expand it)")
    return problems


class ArgumentParser(argparse.ArgumentParser):
    """argparse without abbreviations (`--student` is not `--students`) and
    with a suggestion for every unknown option."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        self.option_names: List[str] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        self.option_names += [arg for arg in args if arg.startswith("--")]
        return super().add_argument(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, leftovers = self.parse_known_args(args, namespace)
        problems = leftover_problems(leftovers, self.option_names)
        if problems:
            self.error("; ".join(problems))
        return parsed


# --------------------------------------------------------------------------
# The Beam entry points: --help, logging, exit status


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the module docstring's layout and shows every option's default,
    except empty ones ("(default: )" says nothing)."""

    def _get_help_string(self, action):
        if action.default in ("", None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


class _HelpParser(argparse.ArgumentParser):
    """The --help parser: options named in `required` are shown as required
    (Beam's parser cannot make them so: every entry point's classes share it)."""

    def __init__(self, *args, required=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.required = set(required)

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument

        def add_argument(*names, **options):
            if set(names) & self.required:
                options["required"] = True
            return add(*names, **options)

        group.add_argument = add_argument
        return group


def _shown(option: str) -> str:
    """'--output OUTPUT', as argparse shows an option taking a value."""
    return f"{option} {option.lstrip('-').upper()}"


def _usage(required) -> str:
    """The usage line: the required options, then [OPTION ...] for the rest
    (listed below it). Each item of `required` is an option, or a tuple of
    alternatives (each a tuple of options that go together), which is shown
    in parentheses, one alternative a line."""
    lines = ["%(prog)s"]
    for item in required:
        if not isinstance(item, str):
            shown = [" ".join(map(_shown, options)) for options in item]
            lines += ["    (" + shown[0]] + ["     | " + text for text in shown[1:]]
            lines[-1] += ")"
    rest = " ".join([_shown(item) for item in required if isinstance(item, str)]
                    + ["[OPTION ...]"])
    if len(lines) == 1:
        return f"{lines[0]} {rest}"
    return "\n".join(lines + ["    " + rest])


def help_parser(prog: str, description: str, arguments, required) -> argparse.ArgumentParser:
    """The --help of a Beam entry point: the option groups `arguments` adds
    (add_<group>_arguments functions, pipelines.arguments) and the operator
    options, with `required` (see _usage()) shown as required."""
    parser = _HelpParser(
        prog=prog, description=description, formatter_class=_HelpFormatter,
        usage=_usage(required), required=[item for item in required if isinstance(item, str)],
        epilog="Beam options are accepted as well, e.g. --runner DirectRunner (default), "
               "--direct_running_mode multi_processing, --direct_num_workers N; "
               "on Dataflow: --runner DataflowRunner --project --region --temp_location.")
    for add_arguments in tuple(arguments) + (add_operator_arguments,):
        add_arguments(parser)
    return parser


def operator_settings(argv) -> argparse.Namespace:
    """--progress, --log_level and --beam_log_level from `argv` (UsageError
    for a bad value), before Beam parses anything."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    add_operator_arguments(parser)
    try:
        settings, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as error:
        raise UsageError(str(error)) from None
    return settings


def configure_logging(level: str = "INFO", beam_level: str = "ERROR") -> None:
    """Our loggers at `level`, Beam's at `beam_level`, everything else at
    WARNING, all to stderr as 'LEVEL logger: message'."""
    root = logging.getLogger()
    if not any(isinstance(handler, logging.StreamHandler) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.getLogger("apache_beam").setLevel(beam_level)


def command_line(prog: str, description: str, arguments, required, run, argv=None) -> None:
    """A Beam entry point's main(): --help (see help_parser), then run(argv),
    which imports Beam, with exit status 2 for a bad command line and 1 for a
    failed job, each with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        help_parser(prog, description, arguments, required).print_help()
        return
    try:
        settings = operator_settings(argv)
        configure_logging(settings.log_level, settings.beam_log_level)
        run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
