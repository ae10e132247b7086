"""``aegym`` command line: ``aegym list`` prints every environment id."""

from __future__ import annotations

import argparse
import sys

from aegym.envs import list_envs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aegym", description="aegym environments")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every environment id with a one-line description")
    args = parser.parse_args(argv)
    if args.command == "list":
        envs = list_envs()
        width = max(len(i) for i, _ in envs)
        for env_id, desc in envs:
            print(f"{env_id:<{width}}  {desc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
