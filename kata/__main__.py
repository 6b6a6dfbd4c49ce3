"""`python -m kata <command>`: generate (maintainers) and lecture (learners)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write exercises/ from solutions/ (overwrites exercises/)")
    gen.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    sub.add_parser("lecture", help="train the lecture's networks with your own code", add_help=False)
    args, rest = parser.parse_known_args(argv)

    if args.command == "generate":
        from kata import generate
        if args.check:
            stale = generate.drift()
            for topic in stale:
                print(f"exercises/{topic}.py differs from the stub generated from solutions/{topic}.py")
            return 1 if stale else 0
        for path in generate.generate():
            print(f"wrote {path}")
        return 0
    from kata import lecture
    return lecture.main(rest)


if __name__ == "__main__":
    sys.exit(main())
