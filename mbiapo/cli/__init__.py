"""``mbiapo`` command line. Results go to stdout (one JSON object with --json); progress and
logs go to stderr. Bad input is one ``mbiapo: error: ...`` line and exit code 2; Ctrl-C is
one ``mbiapo: interrupted`` line and exit code 130 (``train`` saves first).

Each module of this package adds the parsers of a group of commands (``add_parsers``) and
maps each command to its handler (``HANDLERS``); a handler checks its flags and calls the
library. Heavy imports happen inside the handlers, so ``mbiapo --help`` stays fast."""

import argparse
import json
import sys

from mbiapo import threads
from mbiapo.cli import acting, analyses, benchmark, datasets, sweeps, training
from mbiapo.errors import MbiapoError
from mbiapo.registry import load_plugins
from mbiapo.runtime import keep_freed_memory

COMMANDS = (training, acting, datasets, analyses, sweeps, benchmark)
"""The command modules, in the order ``mbiapo --help`` lists their commands."""


def _thread_setting(text: str):
    try:
        return threads.parse(text)
    except MbiapoError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    """Every (sub)command takes --plugin (loaded before parsing: ``_plugin_specs``) and
    --threads (the thread policy, applied before the command runs)."""

    _intermixing = False  # inside parse_known_intermixed_args

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                          help="import MODULE (or FILE.py) first: it may register planners "
                          "and value estimators (repeatable)")
        self.add_argument("--threads", type=_thread_setting, default=argparse.SUPPRESS,
                          metavar="N", help="torch threads: a number, or auto (default: "
                          "the usable cores less those other processes keep busy)")

    def error(self, message: str):  # one line instead of usage + message
        raise MbiapoError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def parse_known_args(self, args=None, namespace=None):
        """A command's positionals (``key=value`` overrides) may sit between its flags
        (argparse's intermixed parsing). A parser of subcommands parses as usual: intermixed
        parsing rejects them, and each subcommand's own parser intermixes."""
        if self._intermixing or self._has_subcommands():
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back here
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def _has_subcommands(self) -> bool:
        """Whether a positional takes a subcommand (or the rest of the line)."""
        return any(a.nargs in (argparse.PARSER, argparse.REMAINDER)
                   for a in self._get_positional_actions())


def _plugin_specs(argv: list[str]) -> list[str]:
    """The --plugin values of a command line."""
    specs = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            specs.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            specs.append(arg.partition("=")[2])
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mbiapo", description="Policy optimization as planning: train "
                     "agents, plan with their value estimates, benchmark planners.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMANDS:
        module.add_parsers(sub)
    return parser


def _print_human(result: dict) -> None:
    if "table" in result:  # an analysis: its table and where its files are
        print(result["table"])
        print(f"results in {result['out']}")
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        print(f"{key:>22}: {value}")


def _close_progress_bars() -> None:
    """Clear the progress bars a command cut short (Ctrl-C, an error midway) left open, so
    that the line saying why is the last line on stderr."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.leave = False
        bar.close()


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    try:
        load_plugins(_plugin_specs(argv))  # before the parser: they add --planner choices
        args = build_parser().parse_args(argv)
        handlers = {name: h for module in COMMANDS for name, h in module.HANDLERS.items()}
        threads.apply(getattr(args, "threads", threads.AUTO))
        result = handlers[args.command](args)
    except MbiapoError as e:
        _close_progress_bars()  # a run that fails midway (a full disk) ends on its error
        print(f"mbiapo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, and the shell's code for SIGINT
        _close_progress_bars()
        print("mbiapo: interrupted", file=sys.stderr)
        return 130
    exit_code = result.pop("exit_code", 0)  # a sweep with failed runs still reports them
    result.setdefault("threads", threads.current().threads)
    if getattr(args, "json", False):
        result.pop("table", None)
        print(json.dumps(result))
    else:
        _print_human(result)
    return exit_code
