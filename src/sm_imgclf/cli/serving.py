"""``sm-imgclf deploy``, ``predict``, ``evaluate`` and ``endpoints``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from sm_imgclf.cli.args import list_or_act, make_session


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the commands on the ``sm-imgclf`` parser."""
    deploy = commands.add_parser(
        "deploy", parents=[common], help="serve a job's model at an endpoint"
    )
    deploy.add_argument("job", help="the training job whose model to serve")
    deploy.add_argument("--endpoint", help="endpoint name (default: the job name)")
    deploy.add_argument(
        "--instance-type",
        default="ml.m5.large",
        help="SageMaker instance type (default: ml.m5.large; not used locally)",
    )
    deploy.add_argument(
        "--top-k",
        type=int,
        default=5,
        help="classes per answer when a request does not ask (default: 5)",
    )
    deploy.add_argument(
        "--forward",
        default="auto",
        choices=("auto", "eager", "channels_last", "onnxruntime", "autocast"),
        help="the forward path (default: auto, the fastest measured at load)",
    )
    deploy.add_argument(
        "--delete-after",
        metavar="DURATION",
        help="delete the endpoint by itself after this long (4h, 90m, 2d)",
    )
    predict = commands.add_parser("predict", parents=[common], help="classify images")
    predict.add_argument("endpoint")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument(
        "--top-k", type=int, help="classes per image (default: the endpoint's own, 5 unless set)"
    )
    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="accuracy, per class, confusion, latency on a folder"
    )
    evaluate.add_argument("endpoint")
    evaluate.add_argument(
        "folder",
        help="a labelled folder (one sub-folder per class), or the "
        "channel URI an upload printed (file:// or s3://)",
    )
    evaluate.add_argument("--plots", help="folder for the confusion and per-class plots")
    evaluate.add_argument(
        "--report",
        metavar="HTML",
        help="write an HTML report: confused pairs, mistakes, calibration",
    )
    evaluate.add_argument(
        "--explain",
        metavar="JOB_OR_PACKAGE",
        help="heatmaps in the report from this training job or model.tar.gz "
        "(default: the endpoint's own model, where the backend knows it)",
    )
    explain = commands.add_parser(
        "explain", parents=[common], help="heatmaps of where a job's model looked"
    )
    explain.add_argument("model", help="a training job, or a model.tar.gz or its folder")
    explain.add_argument("images", nargs="+", help="image files")
    explain.add_argument(
        "--out",
        default="explanations",
        help="folder for the heatmap overlays (default: ./explanations)",
    )
    explain.add_argument("--top-k", type=int, default=5, help="classes per image (default: 5)")
    endpoints = commands.add_parser("endpoints", parents=[common], help="list or delete endpoints")
    endpoints.add_argument("action", choices=("list", "delete"))
    endpoints.add_argument("name", nargs="?", help="the endpoint to delete")


def deploy(args: argparse.Namespace) -> int:
    """Start an endpoint that stays up until ``endpoints delete``."""
    from sm_imgclf.contracts.deploy import DeployOptions
    from sm_imgclf.training.job import TrainingJob

    session = make_session(args)
    job = TrainingJob.attach(args.job, session)
    options = DeployOptions(
        instance_type=args.instance_type, top_k=args.top_k, forward=args.forward
    )
    client = job.deploy(args.endpoint, options=options, delete_after=args.delete_after)
    client.owned = False  # the command returns; the endpoint must outlive it
    if args.json:
        print(json.dumps({"endpoint": client.name}))
    else:
        when = f"; it deletes itself after {args.delete_after}" if args.delete_after else ""
        print(
            f"endpoint {client.name} is serving{when}; delete it with: sm-imgclf endpoints "
            f"delete {client.name}"
        )
    return 0


def predict(args: argparse.Namespace) -> int:
    """Print the top classes of each image."""
    from sm_imgclf.serving.client import EndpointClient

    client = EndpointClient.attach(args.endpoint, make_session(args))
    answers = client.predict(list(args.images), top_k=args.top_k)
    if args.json:
        print(
            json.dumps(
                [
                    {"image": image, **asdict(answer)}
                    for image, answer in zip(args.images, answers, strict=True)
                ],
                indent=2,
            )
        )
    else:
        for image, answer in zip(args.images, answers, strict=True):
            others = ", ".join(f"{label} {score:.2f}" for label, score in answer.top_k[1:])
            print(f"{image}: {answer.label} ({answer.score:.2f}){'; ' + others if others else ''}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate an endpoint on a labelled folder; optionally write the HTML report."""
    from sm_imgclf.serving.client import EndpointClient

    session = make_session(args)
    client = EndpointClient.attach(args.endpoint, session)
    result = client.evaluate(args.folder, plots=args.plots)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    if args.report:
        model = _model(args.explain, session) if args.explain else client.model_uri
        source: Any = _explainer(model, session) if model else None
        page = result.report(args.report, explain=source)
        if not args.json:
            print(f"report: {page}" + ("" if model else " (no heatmaps: pass --explain JOB)"))
    return 0


def explain(args: argparse.Namespace) -> int:
    """Write a heatmap overlay for each image and print what the model saw."""
    from pathlib import Path

    session = make_session(args)
    with _explainer(_model(args.model, session), session) as explainer:
        found = explainer.explain(list(args.images), top_k=args.top_k)
    out = Path(args.out)
    rows = []
    for number, item in enumerate(found):
        path = item.save(out / f"{number:03d}_{Path(item.source).stem}.png")
        rows.append(
            {
                "image": item.source,
                "label": item.label,
                "score": item.score,
                "method": item.method,
                "layer": item.layer,
                "overlay": str(path),
            }
        )
        if not args.json:
            print(f"{item.source}: {item.label} ({item.score:.2f}) -> {path}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _model(name: str, session: Any) -> Any:
    """A training job of the session by that name, else the path or URI as given."""
    from pathlib import Path

    from sm_imgclf._params import bad_value
    from sm_imgclf.errors import BackendError
    from sm_imgclf.training.job import TrainingJob

    if "://" in name or Path(name).exists():
        return name
    try:
        return TrainingJob.attach(name, session)
    except BackendError:
        raise bad_value(
            "model", "a training job of this session, or a model.tar.gz or its folder", name
        ) from None


def _explainer(model: Any, session: Any) -> Any:
    from sm_imgclf.evaluation.explain import ModelExplainer

    return ModelExplainer(model, session=session)


def endpoints(args: argparse.Namespace) -> int:
    """List endpoints, or delete one."""
    backend = make_session(args).backend
    return list_or_act(
        args, "endpoints", backend.list_endpoints, backend.delete_endpoint, "deleted"
    )
