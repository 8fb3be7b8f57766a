"""`msaic store check` and `msaic store repair` (the work is `tasks.store.repair`).

They run without Prefect on purpose: they are what an operator reaches for when a store is
damaged or its disk full, when the temporary Prefect API (a SQLite database of its own) may not
even start, and they take a second where the API takes ten to boot.
"""

from __future__ import annotations

import argparse

from flows.args import existing_store
from tasks.store.repair import LOST_FILE, Finding, check_store, repair_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="find unreadable parts and leftovers of killed runs; set them aside")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="list what blocks the store (exit 1 if anything)")
    check.add_argument("--store", type=existing_store, required=True, help="store or scoring OUT directory")
    check.set_defaults(func=run_check, prefect=False)
    repair = actions.add_parser("repair", help="move what blocks the store to STORE/lost+found/<time>/")
    repair.add_argument("--store", type=existing_store, required=True, help="store or scoring OUT directory")
    repair.set_defaults(func=run_repair, prefect=False)


def _line(finding: Finding) -> str:
    return f"{finding.kind:16} {finding.path}: {finding.detail}"


def run_check(args: argparse.Namespace) -> int:
    findings = check_store(args.store)
    for finding in findings:
        print(_line(finding))
    if not findings:
        print(f"{args.store}: every part is readable, nothing is left over")
        return 0
    print(f"{len(findings)} problems: `msaic store repair --store {args.store}` sets them aside")
    return 1


def run_repair(args: argparse.Namespace) -> int:
    repair = repair_store(args.store)
    for finding in repair.moved:
        print(_line(finding))
    if repair.folder is None:
        print(f"{args.store}: nothing to repair")
    else:
        print(f"{len(repair.moved)} entries moved to {repair.folder} (what and why: {LOST_FILE})")
    return 0
