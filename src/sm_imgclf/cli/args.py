"""Parsing helpers of the ``sm-imgclf`` command: sessions, ``name=value`` pairs, ranges."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sm_imgclf.contracts.space import Range, Scale
    from sm_imgclf.session import Session


def session_options() -> argparse.ArgumentParser:
    """Options every command that touches a session takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", choices=("local", "sagemaker"), default="local")
    common.add_argument("--session-root", help="local session folder (local backend)")
    common.add_argument("--bucket", help="S3 bucket (sagemaker backend)")
    common.add_argument("--region", help="AWS region (sagemaker backend)")
    common.add_argument("--role", help="IAM role ARN for jobs and models (sagemaker backend)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    return common


def make_session(args: argparse.Namespace) -> Session:
    """The session the options describe."""
    from sm_imgclf._params import bad_value
    from sm_imgclf.session import LocalSession, SageMakerSession

    if args.backend == "sagemaker":
        if not args.bucket:
            raise bad_value("--bucket", "given with --backend sagemaker", None)
        return SageMakerSession(args.bucket, region=args.region, role=args.role)
    return LocalSession(args.session_root)


def pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``["lr=0.01", "epochs=3"]`` as a dictionary."""
    from sm_imgclf._params import bad_value

    result = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise bad_value(what, "name=value", item)
        result[name.strip()] = value.strip()
    return result


def parse_range(name: str, text: str) -> Range:
    """``log:1e-4:1e-1``, ``linear:0:0.5``, ``int:1:8``, ``int-log:8:256`` or ``32,64``."""
    from sm_imgclf._params import bad_value
    from sm_imgclf.contracts.hyperparameters import BY_NAME
    from sm_imgclf.contracts.space import Categorical, Continuous, Integer

    kind, _, rest = text.partition(":")
    scales: dict[str, Scale] = {
        "linear": "linear",
        "log": "log",
        "reverse-log": "reverse_log",
        "int": "linear",
        "int-log": "log",
    }
    if kind in scales and rest.count(":") == 1:
        low, high = rest.split(":")
        try:
            if kind.startswith("int"):
                return Integer(int(low), int(high), scales[kind])
            return Continuous(float(low), float(high), scales[kind])
        except ValueError:
            raise bad_value(f"--param {name}", f"{kind}:<min>:<max> with numbers", text) from None
    if ":" in text or name not in BY_NAME:
        raise bad_value(
            f"--param {name}",
            "log:<min>:<max>, linear:<min>:<max>, "
            "int:<min>:<max>, int-log:<min>:<max> or a comma list of values",
            text,
        )
    return Categorical([BY_NAME[name].parse(v) for v in text.split(",") if v])


def list_or_act(
    args: argparse.Namespace,
    noun: str,
    listing: Callable[[], list[dict[str, Any]]],
    act: Callable[[str], None],
    done: str,
    doing: str | None = None,
) -> int:
    """``<noun> list`` prints name and status; the other action runs ``act`` on the name.

    The action is reported as ``{done: name}`` in JSON, ``<doing or done> <name>`` in text.
    """
    import json

    from sm_imgclf._params import bad_value

    if args.action != "list":
        if not args.name:
            raise bad_value(f"{noun} {args.action}", f"given a {noun[:-1]} name", None)
        act(args.name)
        print(json.dumps({done: args.name}) if args.json else f"{doing or done} {args.name}")
        return 0
    rows = listing()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']}\t{row['status']}")
    return 0
