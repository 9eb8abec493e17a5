"""`python -m benchmarks.realsets list | write NAME OUT [--source PATH]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import REALSETS


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realsets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the sets, their task and source package")
    write = sub.add_parser("write", help="write one set")
    write.add_argument("name", choices=sorted(REALSETS))
    write.add_argument("out", type=Path, help="folder to write (emptied first)")
    write.add_argument("--source", type=Path, help="where the package's files are (default: where it installs them)")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, s in REALSETS.items():
            print(f"{name:18s} {s.task:22s} {s.provenance.package}: {s.provenance.description}")
        return None
    kwargs = {"source": args.source} if args.source is not None else {}
    try:
        root = REALSETS[args.name].write(args.out, **kwargs)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    print(f"{args.name}: written to {root} (provenance in {root / 'SOURCE.json'}); train with "
          f"python -m {REALSETS[args.name].task} --data {root}")
    return root


if __name__ == "__main__":
    main()
