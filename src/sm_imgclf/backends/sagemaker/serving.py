"""SageMaker endpoints: CreateModel, CreateEndpointConfig, CreateEndpoint, and their undoing."""

from __future__ import annotations

from typing import Any

from sm_imgclf.backends.sagemaker.images import inference_ami, is_ray_serve
from sm_imgclf.backends.sagemaker.instances import serving_environment
from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
from sm_imgclf.contracts.tags import DELETE_AT
from sm_imgclf.errors import ConfigurationError


def deploy_requests(spec: DeploySpec, *, image_uri: str, region: str) -> dict[str, dict[str, Any]]:
    """The three requests, keyed by operation, that create ``spec``'s endpoint."""
    if not spec.role:
        raise ConfigurationError(
            "A SageMaker endpoint needs an IAM role: pass role= to SageMakerSession or to deploy()."
        )
    if not spec.model_uri.startswith("s3://"):
        raise ConfigurationError(f"SageMaker serves model packages from S3; got {spec.model_uri}.")
    name = spec.name
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": name}
    if spec.serverless_memory_mb is None:
        variant |= {"InstanceType": spec.instance_type, "InitialInstanceCount": spec.instance_count}
        ami = inference_ami(image_uri, spec.instance_type)
        if ami:
            variant["InferenceAmiVersion"] = ami
    else:
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": spec.serverless_memory_mb,
            "MaxConcurrency": spec.serverless_max_concurrency,
        }
    tags = [{"Key": k, "Value": v} for k, v in spec.tags]
    # Marks the endpoint whose deletion is scheduled, so an early delete removes the schedule.
    marker = [{"Key": DELETE_AT, "Value": spec.delete_after}] if spec.delete_after else []
    return {
        "CreateModel": {
            "ModelName": name,
            "ExecutionRoleArn": spec.role,
            "Tags": tags,
            "PrimaryContainer": {
                "Image": image_uri,
                "ModelDataUrl": spec.model_uri,
                "Environment": {
                    **_server_environment(spec, image_uri, region),
                    **spec.container_environment(),
                },
            },
        },
        "CreateEndpointConfig": {
            "EndpointConfigName": name,
            "ProductionVariants": [variant],
            "Tags": tags,
        },
        "CreateEndpoint": {"EndpointName": name, "EndpointConfigName": name, "Tags": tags + marker},
    }


def _server_environment(spec: DeploySpec, image_uri: str, region: str) -> dict[str, str]:
    """What the image's model server reads from the environment.

    Nothing for Ray Serve (``config.yaml`` says it all); the entry point, workers
    and threads for the TorchServe images.
    """
    if is_ray_serve(image_uri):
        return {}
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_REGION": region,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        **serving_environment(
            None if spec.serverless_memory_mb is not None else spec.instance_type
        ),
    }


def transform_request(spec: BatchSpec, manifest_uri: str) -> dict[str, Any]:
    """The ``CreateTransformJob`` request: the images a manifest lists, one per request.

    A manifest, not the bare prefix: a prefix also matches its longer siblings
    (``imgs`` reads ``imgs_old/``) and every object under it, and one CSV or
    ``.DS_Store`` among the images fails the whole job.
    """
    workers = serving_environment(spec.instance_type).get("SAGEMAKER_MODEL_SERVER_WORKERS")
    request: dict[str, Any] = {
        "TransformJobName": spec.name,
        "ModelName": spec.name,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": manifest_uri}},
            "ContentType": "application/x-image",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": spec.output_uri,
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
        },
        "Environment": {"SM_IMGCLF_TOP_K": str(spec.top_k)},
        "MaxPayloadInMB": 6,
        "Tags": [{"Key": k, "Value": v} for k, v in spec.tags],
    }
    if workers:  # AWS: ideally the number of workers serving on each instance
        request["MaxConcurrentTransforms"] = int(workers)
    return request


def input_prefix(spec: BatchSpec) -> str:
    """The input as an ``s3://`` folder (with its trailing ``/``); anything else is refused."""
    for name, uri in (("input_uri", spec.input_uri), ("output_uri", spec.output_uri)):
        bucket = uri.removeprefix("s3://").partition("/")[0]
        if not uri.startswith("s3://") or not bucket:
            raise ConfigurationError(
                f"{name} must be an s3:// prefix for a SageMaker batch transform; got {uri!r}. "
                "Upload the images first (ImageFolderDataset.upload, or the session's store), "
                "or score a local folder with a LocalSession."
            )
    return spec.input_uri.rstrip("/") + "/"


def image_manifest(prefix: str, keys: list[str]) -> bytes:
    """A transform's manifest: the prefix, then each image's key relative to it."""
    import json

    return json.dumps([{"prefix": prefix}, *keys]).encode()
