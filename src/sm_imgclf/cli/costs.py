"""``sm-imgclf resources`` and ``sm-imgclf cleanup``: what costs money now, and ending it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

from sm_imgclf.cli.args import make_session, pairs

if TYPE_CHECKING:
    from sm_imgclf.contracts.resources import Resource


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the commands on the ``sm-imgclf`` parser."""
    commands.add_parser(
        "resources", parents=[common], help="list what is billable now: endpoints up, jobs running"
    )
    cleanup = commands.add_parser(
        "cleanup", parents=[common], help="delete endpoints (with configs and models) and stop jobs"
    )
    cleanup.add_argument("names", nargs="*", help="resource names")
    cleanup.add_argument(
        "--older-than", metavar="DURATION", help="only what is older, such as 2h, 90m, 1d"
    )
    cleanup.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only what carries this tag (repeatable)",
    )
    cleanup.add_argument(
        "--created-by-library", action="store_true", help="only what sm-imgclf created"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="show, remove nothing")
    cleanup.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def resources(args: argparse.Namespace) -> int:
    """Print every billable resource with its age and cost."""
    found = make_session(args).resources()
    now = dt.datetime.now(dt.UTC)
    if args.json:
        print(json.dumps([_row(r, now) for r in found], indent=2))
        return 0
    if not found:
        print("nothing billable: no endpoint is up and no job is running")
        return 0
    print(_table(found, now))
    total = sum(r.usd_per_hour or 0.0 for r in found)
    print(
        f"\n{len(found)} resource(s); known cost now ${total:,.2f} per hour. Prices: "
        + "; ".join(sorted({f"{r.price.source} ({r.price.as_of})" for r in found if r.price}))
    )
    return 0


def cleanup(args: argparse.Namespace) -> int:
    """Remove what matches; ask first unless ``--yes`` or ``--dry-run``."""
    from sm_imgclf._params import bad_value
    from sm_imgclf.contracts.resources import select

    session = make_session(args)
    tags = pairs(args.tag, "--tag")
    chosen = select(
        session.resources(),
        names=args.names,
        older_than=args.older_than,
        tags=tags,
        by_library=args.created_by_library,
    )
    now = dt.datetime.now(dt.UTC)
    if not chosen:
        print(json.dumps([]) if args.json else "nothing matches; nothing removed")
        return 0
    if not args.json:
        print(_table(chosen, now))
    if args.dry_run:
        print(
            json.dumps([_row(r, now) for r in chosen], indent=2)
            if args.json
            else f"\n--dry-run: {len(chosen)} resource(s) would be removed; nothing was."
        )
        return 0
    if not args.yes and not _confirmed(len(chosen)):
        raise bad_value(
            "cleanup", "a confirmation (answer 'y', or pass --yes)", "no", "Nothing was removed."
        )
    for resource in chosen:
        session.backend.remove_resource(resource)
        if not args.json:
            print(
                f"{'deleted' if resource.kind == 'endpoint' else 'stopped'} "
                f"{resource.kind} {resource.name}"
            )
    if args.json:
        print(json.dumps([_row(r, now) for r in chosen], indent=2))
    return 0


def _confirmed(count: int) -> bool:
    if not sys.stdin.isatty():
        return False  # a script that meant it passes --yes
    answer = input(f"Remove these {count} resource(s)? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _row(item: Resource, now: dt.datetime) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "name": item.name,
        "status": item.status,
        "created": item.created.isoformat() if item.created else None,
        "age_hours": item.age_hours(now),
        "instance_type": item.instance_type,
        "instance_count": item.instance_count,
        "created_by_library": item.by_library,
        "usd_per_hour": item.usd_per_hour,
        "usd_so_far": item.usd_so_far(now),
        "price_source": item.price.source if item.price else None,
        "price_as_of": item.price.as_of if item.price else None,
        "tags": dict(item.tags),
    }


def _table(found: list[Resource], now: dt.datetime) -> str:
    rows = [("KIND", "NAME", "STATUS", "AGE", "INSTANCES", "$/H", "$ SO FAR", "OURS")]
    for item in found:
        age = item.age_hours(now)
        rate, spent = item.usd_per_hour, item.usd_so_far(now)
        rows.append(
            (
                item.kind,
                item.name,
                item.status,
                "?" if age is None else f"{age:,.1f}h",
                f"{item.instance_count} x {item.instance_type}" if item.instance_type else "-",
                "?" if rate is None else f"{rate:,.3f}",
                "?" if spent is None else f"{spent:,.2f}",
                "yes" if item.by_library else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
