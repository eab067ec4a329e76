"""The ``promptcache`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``promptcache`` command."""
    parser = argparse.ArgumentParser(prog="promptcache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a real agent trajectory as sent and through promptcache")
    demo.add_argument("--provider", choices=["openai", "anthropic", "both"], default="both")
    demo.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from promptcache.demo import render, run_demo

        providers = ["openai", "anthropic"] if args.provider == "both" else [args.provider]
        reports = [run_demo(p) for p in providers]
        if args.json:
            json.dump({"reports": reports}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print("\n\n".join(render(r) for r in reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
