"""The ``llmsplit`` command: ``llmsplit train | evaluate | sweep | profile | map | server``.

Each subcommand is its module's ``main(argv, prog)`` with the arguments after the subcommand's name, so
``llmsplit <command> --help`` shows that command's flags and its exit statuses are the command's own (0 done, 2 a bad
flag or value with one ``error:`` line, 130 Ctrl-C). Light: a subcommand's module is imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand → (module whose ``main(argv, prog)`` runs it, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("agents.zoo.train", "train agents and compare them; agents and summary.json under --log-folder"),
    "evaluate": ("agents.zoo.evaluate", "evaluate the trained agents on held-out seeds; table, plots, --json"),
    "sweep": ("agents.zoo.sweep", "Ray Tune sweep of agents x seeds x env configs (needs llmsplit[ray])"),
    "profile": ("llmsplit_env.profiling.builder", "build a quality profile of a real split LLM (--ray: on Ray)"),
    "map": ("llmsplit_env.profiling.split_map", "a profile's split map: PPL over split x level, best split per level"),
    "server": ("llmsplit_env.quality.client", "start, stop or query a shared quality server on a Ray cluster"),
}


def build_parser() -> argparse.ArgumentParser:
    import llmsplit_env

    p = argparse.ArgumentParser(
        prog="llmsplit",
        description="Adaptive LLM layer splitting between a phone and an edge server: train and evaluate agents, "
        "sweep them on Ray, build quality profiles.",
        epilog="`llmsplit COMMAND --help` shows that command's flags.",
    )
    p.add_argument("--version", action="version", version=f"llmsplit {llmsplit_env.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, description) in COMMANDS.items():
        sub.add_parser(name, help=description, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``llmsplit ARGV`` and return its exit status. As every command's ``main``, argparse's own exits (``--help``,
    ``--version``, a malformed command line: status 2 with a usage line) raise ``SystemExit``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        parser.parse_args(argv)  # --help, --version, or an unknown command: argparse says so and exits
        parser.error("give a command (llmsplit --help lists them)")
    command, rest = argv[0], argv[1:]
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main(rest, prog=f"llmsplit {command}") or 0)
    except KeyboardInterrupt:  # commands that handle Ctrl-C themselves say more; this is the others' one line
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
