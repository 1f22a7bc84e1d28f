"""``sm-imgclf deploy``, ``predict``, ``evaluate`` and ``endpoints``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from sm_imgclf.cli_args import list_or_act, make_session


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the commands on the ``sm-imgclf`` parser."""
    deploy = commands.add_parser("deploy", parents=[common],
                                 help="serve a job's model at an endpoint")
    deploy.add_argument("job", help="the training job whose model to serve")
    deploy.add_argument("--endpoint", help="endpoint name (default: the job name)")
    deploy.add_argument("--instance-type", default="ml.m5.large")
    predict = commands.add_parser("predict", parents=[common], help="classify images")
    predict.add_argument("endpoint")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top-k", type=int, default=3)
    evaluate = commands.add_parser("evaluate", parents=[common],
                                   help="accuracy, per class, confusion, latency on a folder")
    evaluate.add_argument("endpoint")
    evaluate.add_argument("folder", help="a labelled folder (one sub-folder per class)")
    evaluate.add_argument("--plots", help="folder for the confusion and per-class plots")
    endpoints = commands.add_parser("endpoints", parents=[common],
                                    help="list or delete endpoints")
    endpoints.add_argument("action", choices=("list", "delete"))
    endpoints.add_argument("name", nargs="?", help="the endpoint to delete")


def deploy(args: argparse.Namespace) -> int:
    """Start an endpoint that stays up until ``endpoints delete``."""
    from sm_imgclf.training.job import TrainingJob

    session = make_session(args)
    job = TrainingJob.attach(args.job, session)
    options: dict[str, Any] = {}
    if args.backend == "sagemaker":
        options["instance_type"] = args.instance_type
    client = job.deploy(args.endpoint, **options)
    client.owned = False  # the command returns; the endpoint must outlive it
    if args.json:
        print(json.dumps({"endpoint": client.name}))
    else:
        print(f"endpoint {client.name} is serving; delete it with: sm-imgclf endpoints "
              f"delete {client.name}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Print the top classes of each image."""
    from sm_imgclf.serving.client import EndpointClient

    client = EndpointClient.attach(args.endpoint, make_session(args))
    answers = client.predict(list(args.images), top_k=args.top_k)
    if args.json:
        print(json.dumps([{"image": image, **asdict(answer)}
                          for image, answer in zip(args.images, answers, strict=True)],
                         indent=2))
    else:
        for image, answer in zip(args.images, answers, strict=True):
            others = ", ".join(f"{label} {score:.2f}" for label, score in answer.top_k[1:])
            print(f"{image}: {answer.label} ({answer.score:.2f}){'; ' + others if others else ''}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate an endpoint on a labelled folder."""
    from sm_imgclf.serving.client import EndpointClient

    client = EndpointClient.attach(args.endpoint, make_session(args))
    result = client.evaluate(args.folder, plots=args.plots)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return 0


def endpoints(args: argparse.Namespace) -> int:
    """List endpoints, or delete one."""
    backend = make_session(args).backend
    return list_or_act(args, "endpoints", backend.list_endpoints, backend.delete_endpoint,
                       "deleted")
