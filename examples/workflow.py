"""The path both examples follow: validate, upload, tune, check, deploy, evaluate, clean up."""

from __future__ import annotations

import argparse
from pathlib import Path

import sm_imgclf as smi


def add_options(parser: argparse.ArgumentParser, *, model: str, epochs: int) -> None:
    """The options both examples share."""
    parser.add_argument("--backend", choices=("local", "sagemaker"), default="local")
    parser.add_argument("--bucket", help="S3 bucket (sagemaker backend)")
    parser.add_argument("--role", help="IAM role ARN (sagemaker backend)")
    parser.add_argument("--model", default=model)
    parser.add_argument("--weights", default="DEFAULT", help="DEFAULT, or none offline")
    parser.add_argument("--trainable", default="head", help="head, all, or layer4,...")
    parser.add_argument("--epochs", type=int, default=epochs, help="most epochs of a trial")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--instance-type", default="ml.g4dn.xlarge")
    parser.add_argument("--workdir", default="sm-imgclf-run", help="reports and plots")


def session(args: argparse.Namespace) -> smi.Session:
    """A local session under the workdir, or a SageMaker session."""
    if args.backend == "sagemaker":
        if not args.bucket or not args.role:
            raise SystemExit("--backend sagemaker needs --bucket and --role")
        return smi.SageMakerSession(args.bucket, role=args.role)
    return smi.LocalSession(Path(args.workdir) / "session")


def run(args: argparse.Namespace, root: Path, prefix: str) -> smi.Evaluation:
    """The whole path for the image folder at ``root``; returns the test evaluation."""
    workdir = Path(args.workdir)
    reports = workdir / "report"
    reports.mkdir(parents=True, exist_ok=True)
    data = smi.ImageFolderDataset(root)
    report = data.validate(progress=True)
    print(report)
    chosen = session(args)
    channels = data.upload(chosen, prefix, skip_invalid=True)
    print(channels.summary)

    weights = None if args.weights.lower() == "none" else args.weights
    trainable = args.trainable if args.trainable in ("head", "all") else args.trainable.split(",")
    estimator = smi.TransferLearningEstimator(
        args.model,
        session=chosen,
        weights=weights,
        trainable=trainable,
        hyperparameters={"image_size": args.image_size, "epochs": args.epochs},
        compute=smi.Compute(instance_type=args.instance_type),
    )
    # The ranges people tune for this job: learning rate, batch size and epochs.
    space = {
        "lr": smi.Continuous(1e-4, 1e-1, scale="log"),
        "batch_size": smi.Categorical([32, 64, 128]),
    }
    if args.epochs > 1:
        space["epochs"] = smi.Integer(1, args.epochs)
    result = smi.TuningRun(
        estimator, space, max_jobs=args.trials, max_parallel_jobs=min(args.parallel, args.trials)
    ).run(channels)
    print(result)
    result.plot(reports / "tuning_trials.png")
    best = result.best

    with smi.DebugProfileAnalyzer.from_job(best.job) as analyzer:
        print(analyzer.summary())
        analyzer.report(reports / "checks.html")

    # Instances matter only on SageMaker; the local endpoint serves on this machine.
    with best.job.deploy(options=smi.DeployOptions(instance_type="ml.m5.large")) as endpoint:
        evaluation = endpoint.evaluate(Path(root) / "test", plots=reports)
    print(evaluation)
    # Where it errs and why: confused pairs, its most confident mistakes with
    # heatmaps from the model package (computed here, not on the endpoint).
    evaluation.report(reports / "evaluation.html", explain=best.job)
    worst = sorted(evaluation.per_class.items(), key=lambda item: item[1]["recall"])[:5]
    print("Hardest classes (recall):")
    for class_id, scores in worst:
        print(f"  {class_id:<40} {scores['recall']:.3f} of {int(scores['support'])}")
    print(f"Reports and plots: {reports}")
    return evaluation
