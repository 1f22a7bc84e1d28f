"""``sm-imgclf train``, ``tune``, ``report`` and ``jobs``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sm_imgclf.cli.args import list_or_act, make_session, pairs, parse_range

EXIT_CHECKS = 1


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the commands on the ``sm-imgclf`` parser."""
    train = commands.add_parser("train", parents=[common], help="train a classifier")
    _estimator_options(train)
    train.add_argument("--job-name", help="name the job (reuse a stopped one to resume)")
    train.add_argument("--no-wait", action="store_true", help="start the job and return")
    tune = commands.add_parser("tune", parents=[common], help="tune hyperparameters")
    _estimator_options(tune)
    tune.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME=RANGE",
        help="lr=log:1e-4:1e-1, batch_size=32,64, head_hidden=int:0:512 ...",
    )
    tune.add_argument(
        "--strategy", default="bayesian", choices=("bayesian", "random", "grid", "hyperband")
    )
    tune.add_argument("--objective", default="valid:accuracy")
    tune.add_argument(
        "--max-jobs", type=int, help="trials in all (default: 10; a grid's size for a grid)"
    )
    tune.add_argument("--parallel", type=int, default=2, help="trials at once")
    tune.add_argument("--name", help="name the run (reuse a stopped local one to carry on)")
    tune.add_argument(
        "--in-one-job",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run a head-only search inside one training job (auto: on "
        "SageMaker whenever it applies)",
    )
    tune.add_argument(
        "--share-features",
        choices=("auto", "yes", "no"),
        default="auto",
        help="with one job per trial on SageMaker, a first job runs the "
        "backbone once and every trial reads its features",
    )
    tune.add_argument(
        "--trial-instance-type",
        metavar="TYPE",
        help="instance type of trials that read shared features (default ml.m5.xlarge)",
    )
    report = commands.add_parser(
        "report", parents=[common], help="run the checks on a job and write the HTML report"
    )
    report.add_argument("job", help="job name, job output folder, or output.tar.gz")
    report.add_argument("--out", default="checks.html", help="HTML file to write")
    report.add_argument(
        "--rule",
        action="append",
        metavar="RULE.PARAM=VALUE",
        help="change a rule's threshold, e.g. overfit.patience=3",
    )
    jobs = commands.add_parser("jobs", parents=[common], help="list or stop training jobs")
    jobs.add_argument("action", choices=("list", "stop"))
    jobs.add_argument("name", nargs="?", help="the job to stop")


def _estimator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="dataset folder (validated and uploaded first)")
    parser.add_argument("--prefix", help="store prefix for the data (default datasets/<name>)")
    parser.add_argument(
        "--model",
        default="resnet50",
        help="a torchvision name, efficientnet_lite0, timm:<name>, or package.module:function",
    )
    parser.add_argument(
        "--weights",
        default="DEFAULT",
        help="DEFAULT, an enum name, a file, s3://bucket/key, package:module/path, or none",
    )
    parser.add_argument("--source-dir", help="folder shipped with the job (your model module)")
    parser.add_argument(
        "--trainable",
        help="head, all, or layer3,layer4 (default: head with pretrained weights, all without)",
    )
    parser.add_argument(
        "--hp",
        action="append",
        metavar="NAME=VALUE",
        help="a hyperparameter, e.g. lr=0.01 (repeatable)",
    )
    parser.add_argument("--instance-type", default="ml.g4dn.xlarge")
    parser.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="the most a job (train) or the whole run (tune) may cost; "
        "on SageMaker it caps the run time",
    )


def _estimator(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    from sm_imgclf.contracts.hyperparameters import Hyperparameters
    from sm_imgclf.contracts.training import Compute
    from sm_imgclf.data.dataset import ImageFolderDataset
    from sm_imgclf.training.estimator import TransferLearningEstimator

    session = make_session(args)
    hyper = Hyperparameters.from_strings(pairs(args.hp, "--hp"))
    weights = None if args.weights.lower() == "none" else args.weights
    trainable = (
        args.trainable if args.trainable in (None, "head", "all") else args.trainable.split(",")
    )
    # Checked before the upload: a typo in a name costs nothing.
    estimator = TransferLearningEstimator(
        args.model,
        session=session,
        weights=weights,
        hyperparameters=hyper,
        trainable=trainable,
        compute=Compute(instance_type=args.instance_type),
        source_dir=args.source_dir,
        max_cost=args.max_cost if args.command == "train" else None,
    )
    data = Path(args.data)
    channels = ImageFolderDataset(data).upload(
        session, args.prefix or f"datasets/{data.absolute().name}", progress=not args.json
    )
    return estimator, dict(channels)


def train(args: argparse.Namespace) -> int:
    """Train and print the job's outcome."""
    estimator, channels = _estimator(args)
    job = estimator.fit(channels, wait=not args.no_wait, logs=not args.json, name=args.job_name)
    status = job.describe()
    if args.json:
        print(
            json.dumps(
                {
                    "job_name": job.name,
                    "status": status.status,
                    "model_uri": status.model_uri,
                    "metrics": job.metrics,
                },
                indent=2,
            )
        )
    else:
        print(f"{job.name}: {status.status}; model package: {status.model_uri or '-'}")
    return 0


def _choice(text: str) -> bool | None:
    return {"auto": None, "yes": True, "no": False}[text]


def tune(args: argparse.Namespace) -> int:
    """Tune and print the trials, best first."""
    from sm_imgclf.tuning.run import TuningRun

    estimator, channels = _estimator(args)
    space = {name: parse_range(name, text) for name, text in pairs(args.param, "--param").items()}
    result = TuningRun(
        estimator,
        space,
        objective=args.objective,
        strategy=args.strategy,
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.parallel,
        max_cost=args.max_cost,
        in_one_job=_choice(args.in_one_job),
        share_features=_choice(args.share_features),
        trial_instance_type=args.trial_instance_type,
    ).run(channels, logs=not args.json, name=args.name)
    if args.json:
        best = result.best
        print(
            json.dumps(
                {
                    "name": result.name,
                    "status": result.status,
                    "best": {
                        "job_name": best.job_name,
                        "objective": best.objective,
                        "hyperparameters": best.hyperparameters,
                    },
                    "trials": result.rows(),
                },
                indent=2,
            )
        )
    else:
        print(result)
    return 0


def report(args: argparse.Namespace) -> int:
    """Run the checks; exit 1 when a rule triggered."""
    from dataclasses import asdict

    from sm_imgclf.debug.analyzer import DebugProfileAnalyzer
    from sm_imgclf.training.job import TrainingJob

    if Path(args.job).exists():
        analyzer = DebugProfileAnalyzer.from_path(args.job)
    else:
        analyzer = DebugProfileAnalyzer.from_job(TrainingJob.attach(args.job, make_session(args)))
    overrides: dict[str, dict[str, float]] = {}
    for key, value in pairs(args.rule, "--rule").items():
        rule, _, param = key.partition(".")
        overrides.setdefault(rule, {})[param] = float(value)
    results = analyzer.rules(**overrides)
    path = analyzer.report(args.out, **overrides)
    if args.json:
        print(
            json.dumps(
                {
                    "report": str(path),
                    "rules": [asdict(r) for r in results],
                    "insights": [asdict(i) for i in analyzer.insights()],
                },
                indent=2,
            )
        )
    else:
        print(analyzer.summary(**overrides))
        print(f"report: {path}")
    return EXIT_CHECKS if any(r.triggered for r in results) else 0


def jobs(args: argparse.Namespace) -> int:
    """List jobs, or stop one."""
    backend = make_session(args).backend
    return list_or_act(
        args, "jobs", backend.list_jobs, backend.stop_training, "stopped", "stopping"
    )
