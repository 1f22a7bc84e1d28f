"""The ``sm-imgclf`` command.

Exit codes: 0 success, 1 the data failed validation (``validate``, ``upload``)
or a check triggered (``report``), 2 bad usage, 3 a storage or backend error,
4 any other library error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from sm_imgclf.cli import costs as cli_costs
from sm_imgclf.cli import jobs as cli_jobs
from sm_imgclf.cli import serving as cli_serving
from sm_imgclf.cli.args import make_session, session_options

EXIT_INVALID, EXIT_USAGE, EXIT_STORAGE, EXIT_ERROR = 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (cheap: imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog="sm-imgclf",
        description="From a folder of labelled images to a tuned, checked, deployed classifier.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end demo on this machine")
    demo.add_argument("--workdir", default="sm-imgclf-demo", help="folder for the demo's files")
    validate = commands.add_parser("validate", help="check every image of a dataset")
    validate.add_argument("root", help="dataset folder")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    common = session_options()
    upload = commands.add_parser("upload", parents=[common], help="validate and upload a dataset")
    upload.add_argument("root", help="dataset folder")
    upload.add_argument("prefix", help="key prefix in the store, e.g. datasets/dogs")
    upload.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out files with errors instead of refusing",
    )
    cli_jobs.add_commands(commands, common)
    cli_serving.add_commands(commands, common)
    cli_costs.add_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    from sm_imgclf.errors import BackendError, DatasetError, SmImgclfError, StorageError

    try:
        return int(_COMMANDS[args.command](args))
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except (StorageError, BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_STORAGE
    except SmImgclfError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, ValueError) else EXIT_ERROR


def _demo(args: argparse.Namespace) -> int:
    from sm_imgclf.cli.demo import run_demo

    run_demo(args.workdir)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from sm_imgclf.data.dataset import ImageFolderDataset

    report = ImageFolderDataset(args.root).validate()
    print(report.to_json() if args.json else report)
    return 0 if report.ok else EXIT_INVALID


def _upload(args: argparse.Namespace) -> int:
    from sm_imgclf.data.dataset import ImageFolderDataset

    session = make_session(args)
    channels = ImageFolderDataset(args.root).upload(
        session, args.prefix, skip_invalid=args.skip_invalid
    )
    if args.json:
        print(
            json.dumps(
                {
                    "channels": dict(channels),
                    "skipped": channels.skipped,
                    "uploaded": len(channels.summary.uploaded),
                    "unchanged": len(channels.summary.skipped),
                },
                indent=2,
            )
        )
    else:
        print(channels.summary)
        for split, uri in channels.items():
            print(f"{split}\t{uri}")
    return 0


_COMMANDS = {
    "demo": _demo,
    "validate": _validate,
    "upload": _upload,
    "train": cli_jobs.train,
    "tune": cli_jobs.tune,
    "report": cli_jobs.report,
    "jobs": cli_jobs.jobs,
    "deploy": cli_serving.deploy,
    "predict": cli_serving.predict,
    "evaluate": cli_serving.evaluate,
    "explain": cli_serving.explain,
    "resources": cli_costs.resources,
    "cleanup": cli_costs.cleanup,
    "endpoints": cli_serving.endpoints,
}

if __name__ == "__main__":
    sys.exit(main())
