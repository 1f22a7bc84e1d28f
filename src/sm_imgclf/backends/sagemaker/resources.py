"""What is billable on SageMaker now, and removing it: endpoints up, jobs in progress."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sm_imgclf.backends.sagemaker.errors import translate_errors
from sm_imgclf.backends.sagemaker.prices import PriceBook
from sm_imgclf.backends.sagemaker.tags import created_by_library
from sm_imgclf.contracts.resources import ENDPOINT, TRAINING, TRANSFORM, TUNING, Resource

# Endpoint states in which instances run (and bill); Failed and Deleting ones have none.
_UP = frozenset(
    {"InService", "Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
)


def list_resources(client: Any, prices: PriceBook) -> list[Resource]:
    """Every endpoint that is up and every training, tuning and transform job in progress."""
    return [*_endpoints(client, prices), *_jobs(client, prices), *_tuning_jobs(client)]


def remove(client: Any, resource: Resource) -> None:
    """Delete an endpoint with its config and models, or stop a job."""
    with translate_errors(f"removing {resource.kind}", resource.name):
        if resource.kind == ENDPOINT:
            _delete_endpoint(client, resource.name)
        elif resource.kind == TRAINING:
            client.stop_training_job(TrainingJobName=resource.name)
        elif resource.kind == TUNING:
            client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=resource.name)
        elif resource.kind == TRANSFORM:
            client.stop_transform_job(TransformJobName=resource.name)


def _pages(client: Any, operation: str, key: str, **options: Any) -> Iterator[dict[str, Any]]:
    with translate_errors(operation, "resources"):
        for page in client.get_paginator(operation).paginate(**options):
            yield from page[key]


def _tags(client: Any, arn: str) -> tuple[tuple[str, str], ...]:
    with translate_errors("ListTags", arn):
        found = list(_pages(client, "list_tags", "Tags", ResourceArn=arn))
    return tuple((t["Key"], t["Value"]) for t in found)


def _resource(
    client: Any,
    kind: str,
    name: str,
    status: str,
    arn: str,
    created: Any,
    instance: tuple[str | None, int],
    price: Any,
) -> Resource:
    tags = _tags(client, arn)
    return Resource(
        kind,
        name,
        status,
        created,
        instance[0],
        instance[1],
        tags,
        created_by_library({"Key": k, "Value": v} for k, v in tags),
        price,
    )


def _endpoints(client: Any, prices: PriceBook) -> Iterator[Resource]:
    for summary in _pages(client, "list_endpoints", "Endpoints"):
        if summary["EndpointStatus"] not in _UP:
            continue
        name = summary["EndpointName"]
        kind, count = _endpoint_instances(client, name)
        price = prices.price(kind, "hosting") if kind else None
        yield _resource(
            client,
            ENDPOINT,
            name,
            summary["EndpointStatus"],
            summary["EndpointArn"],
            summary["CreationTime"],
            (kind, count),
            price,
        )


def _endpoint_instances(client: Any, name: str) -> tuple[str | None, int]:
    """The instance type and count behind an endpoint, read from its config.

    An endpoint can outlive its config (deleted by hand, or by an older rollback);
    it still bills, so it is listed with the instances it reports and no type.
    """
    with translate_errors("DescribeEndpoint", name):
        endpoint = client.describe_endpoint(EndpointName=name)
    config = _config(client, endpoint["EndpointConfigName"])
    if config is None:
        variants = endpoint.get("ProductionVariants", [])
        return None, sum(int(v.get("CurrentInstanceCount", 0)) for v in variants)
    variants = config["ProductionVariants"]
    count = sum(int(v.get("InitialInstanceCount", 0)) for v in variants)
    return variants[0].get("InstanceType"), count


def _config(client: Any, name: str) -> dict[str, Any] | None:
    """The endpoint config ``name``, or ``None`` when it no longer exists."""
    from botocore.exceptions import ClientError

    try:
        found: dict[str, Any] = client.describe_endpoint_config(EndpointConfigName=name)
    except ClientError as error:
        if "Could not find" in str(error):
            return None
        raise
    return found


# Per kind of job: list call, its list key, the name in a summary, describe call,
# where the instances are described, and the use its price is for.
_JOBS = (
    (
        TRAINING,
        "list_training_jobs",
        "TrainingJobSummaries",
        "TrainingJob",
        "describe_training_job",
        "ResourceConfig",
        "training",
    ),
    (
        TRANSFORM,
        "list_transform_jobs",
        "TransformJobSummaries",
        "TransformJob",
        "describe_transform_job",
        "TransformResources",
        "transform",
    ),
)


def _jobs(client: Any, prices: PriceBook) -> Iterator[Resource]:
    """Training and transform jobs in progress, with their instances and prices."""
    for kind, listing, key, noun, describe, resources, use in _JOBS:
        for summary in _pages(client, listing, key, StatusEquals="InProgress"):
            name = summary[f"{noun}Name"]
            with translate_errors(describe, name):
                job = getattr(client, describe)(**{f"{noun}Name": name})
            config = job.get(resources, {})
            instance = config.get("InstanceType")
            yield _resource(
                client,
                kind,
                name,
                summary[f"{noun}Status"],
                summary[f"{noun}Arn"],
                job.get("TrainingStartTime") or summary["CreationTime"],
                (instance, int(config.get("InstanceCount", 1))),
                prices.price(instance, use) if instance else None,
            )


def _tuning_jobs(client: Any) -> Iterator[Resource]:
    for summary in _pages(
        client,
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        StatusEquals="InProgress",
    ):
        yield _resource(
            client,
            TUNING,
            summary["HyperParameterTuningJobName"],
            summary["HyperParameterTuningJobStatus"],
            summary["HyperParameterTuningJobArn"],
            summary["CreationTime"],
            (None, 0),
            None,
        )


def _delete_endpoint(client: Any, name: str) -> None:
    """The endpoint, then its config and the models it served (whatever their names)."""
    config_name = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    config = _config(client, config_name)
    client.delete_endpoint(EndpointName=name)
    if config is None:
        return  # its config, and so which models it served, is gone already
    with contextlib.suppress(Exception):  # shared with another endpoint, or already gone
        client.delete_endpoint_config(EndpointConfigName=config_name)
    for variant in config["ProductionVariants"]:
        with contextlib.suppress(Exception):
            client.delete_model(ModelName=variant["ModelName"])
