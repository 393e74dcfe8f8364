"""The ``ntxmeta`` command line: each pipeline step can be run by hand.

    ntxmeta analyse SPEC.json --out RESULT.json [--only rma.REML,common.EE]
"""
from __future__ import annotations

import argparse
import sys

from . import __version__


def _cmd_analyse(args: argparse.Namespace) -> int:
    from .analyse import analyse, dumps
    from .io import write_text
    result = analyse(args.spec, only=args.only)
    write_text(args.out, dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntxmeta", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ntxmeta {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyse", help="run one analysis from a spec (oracle format)")
    p.add_argument("spec", help="spec JSON (csv path relative to it)")
    p.add_argument("--out", required=True, help="result JSON to write")
    p.add_argument("--only", default=None,
                   help="comma-separated sections to compute, e.g. rma.REML,common.EE")
    p.set_defaults(func=_cmd_analyse)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"ntxmeta {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
