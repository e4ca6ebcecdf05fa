"""The ``xfusion`` command: one module per subcommand, each with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit status``.

Bad input (an ``InputError``, raised anywhere below) ends here: one line naming the option or file
and the fix on stderr, exit status 2, and nothing written. Anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from xfusion.errors import InputError

COMMANDS = ('synth', 'reds-gray', 'register', 'fuse', 'check', 'evaluate', 'models', 'bench', 'info')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='xfusion', description='Spatiotemporal fusion of two-camera x-ray videos.')
    sub = parser.add_subparsers(dest='command', required=True)
    for name in COMMANDS:
        module = importlib.import_module(f'xfusion.commands.{name.replace("-", "_")}')
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except InputError as error:
        print(f'xfusion {args.command}: error: {error}', file=sys.stderr)
        return 2
    return code or 0
