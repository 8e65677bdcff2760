"""Command-line strictness shared by every entry point (no Beam import, so the
small tools stay quick to start): an argument that no option accepts stops
the command with exit status 2, naming it and the closest valid option."""

import argparse
import difflib
from typing import Iterable, List


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
