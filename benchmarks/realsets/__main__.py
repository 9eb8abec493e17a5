"""`python -m benchmarks.realsets list | write NAME OUT [--source PATH] | run NAME OUT [--seeds S ...] [-- ARGS]`."""
from __future__ import annotations

import argparse
import sys
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
    run = sub.add_parser("run", help="write the set (once) and run its task CLI over seeds: mean +- std, verdict")
    run.add_argument("name", choices=sorted(REALSETS))
    run.add_argument("out", type=Path, help="folder for the set (data/) and the runs (seed<S>/, seeds.md)")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    run.add_argument("--source", type=Path, help="where the package's files are (default: where it installs them)")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.command == "run":
        from .seeds import run_seeds

        data = args.out / "data"
        if not (data / "SOURCE.json").is_file():
            data = REALSETS[args.name].write(data, **({"source": args.source} if args.source else {}))
        run_seeds(args.name, REALSETS[args.name].task, data, args.out, args.seeds, extra)
        return args.out
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
