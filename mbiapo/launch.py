"""The ``mbiapo`` command's entry point. It imports the command line inside ``main``, so
that Ctrl-C while torch is still loading ends in the same one line (and exit code 130) as
Ctrl-C later on."""

import sys


def main() -> int:
    try:
        from mbiapo.cli import main as command_line
    except KeyboardInterrupt:
        print("mbiapo: interrupted", file=sys.stderr)
        return 130
    return command_line()
