"""Endpoints and batch transforms on SageMaker: requests built by pure functions, then sent."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from sm_imgclf.backends.sagemaker import serving as sagemaker_serving
from sm_imgclf.backends.sagemaker import training as sagemaker_training
from sm_imgclf.backends.sagemaker.clients import SageMakerClients
from sm_imgclf.backends.sagemaker.errors import translate_errors
from sm_imgclf.backends.sagemaker.images import pytorch_image
from sm_imgclf.contracts.deploy import (
    PAYLOAD_LIMIT,
    SERVERLESS_PAYLOAD_LIMIT,
    BatchSpec,
    DeploySpec,
)
from sm_imgclf.contracts.status import JobState
from sm_imgclf.errors import BackendError, EndpointError


class Endpoints:
    """Endpoints and batch transforms on SageMaker, through the backend's clients."""

    def __init__(self, aws: SageMakerClients) -> None:
        self.aws = aws

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The 100 newest endpoints with their status."""
        with translate_errors("ListEndpoints", "endpoints"):
            page = self.aws.sagemaker_client.list_endpoints(
                SortBy="CreationTime", SortOrder="Descending", MaxResults=100
            )
        return [
            {"name": e["EndpointName"], "status": e["EndpointStatus"]} for e in page["Endpoints"]
        ]

    def deploy_requests(self, spec: DeploySpec) -> dict[str, dict[str, Any]]:
        """The validated CreateModel, CreateEndpointConfig and CreateEndpoint requests."""
        spec = replace(spec, role=self.aws.role_arn(spec.role))
        built = sagemaker_serving.deploy_requests(
            spec,
            region=self.aws.region_name,
            image_uri=pytorch_image(
                spec.image_uri,
                scope="inference",
                region=self.aws.region_name,
                instance_type=None if spec.serverless_memory_mb else spec.instance_type,
            ),
        )
        return {
            operation: self.aws.checked(operation, request) for operation, request in built.items()
        }

    def deploy(self, spec: DeploySpec, *, poll: float = 15.0) -> None:
        """Create the model, config and endpoint, then wait for ``InService``.

        Whatever fails or is interrupted, what this call created is removed so
        the same deploy can be tried again, but never a config or a model under
        an endpoint that still exists (and bills): an endpoint still
        ``Creating`` is waited for first, since SageMaker refuses to delete it.
        """
        client = self.aws.sagemaker_client
        if not spec.serverless_memory_mb:
            self.aws.check_quota(spec.instance_type, "endpoint usage", spec.instance_count)
        requests = self.deploy_requests(spec)
        if spec.model_uri.startswith("s3://"):
            self.aws.warn_bucket_policy(spec.model_uri.removeprefix("s3://").split("/", 1)[0])
        if spec.delete_after is not None:
            self.schedule_request(spec)  # its role and time checked before anything bills
        created: list[str] = []
        last: dict[str, str] = {}
        try:
            for operation, create in (
                ("CreateModel", client.create_model),
                ("CreateEndpointConfig", client.create_endpoint_config),
                ("CreateEndpoint", client.create_endpoint),
            ):
                if operation == "CreateEndpoint":
                    self._wait_for_config(spec.name, poll)
                with translate_errors(operation, spec.name):
                    create(**requests[operation])
                created.append(operation)
            self._wait_until_up(spec.name, poll, last)
            if spec.delete_after is not None:
                self._schedule_deletion(spec)
        except BaseException:
            self._roll_back(spec.name, created, last.get("status"), poll)
            raise

    def _wait_for_config(self, name: str, poll: float, attempts: int = 10) -> None:
        """Wait until the new config is visible: CreateEndpoint may refuse it until then."""
        import time

        from botocore.exceptions import ClientError

        client = self.aws.sagemaker_client
        for attempt in range(attempts):
            try:
                client.describe_endpoint_config(EndpointConfigName=name)
                return
            except ClientError as error:
                if "Could not find" not in str(error) or attempt == attempts - 1:
                    raise BackendError(
                        f"Endpoint config {name!r} is not visible: {error}", name=name
                    ) from error
            time.sleep(min(poll, 2.0) * (attempt + 1))

    def _wait_until_up(self, name: str, poll: float, last: dict[str, str]) -> None:
        import time

        while True:
            state = self.describe_endpoint(name)
            last["status"] = str(state["status"])
            if last["status"] in ("InService", "Failed", "OutOfService"):
                break
            time.sleep(poll)
        if state["status"] != "InService":
            raise BackendError(
                f"Endpoint {name!r} is {state['status']}: "
                f"{state.get('failure_reason') or 'no reason given'}",
                name=name,
            )

    def _roll_back(self, name: str, created: list[str], status: str | None, poll: float) -> None:
        """Remove what a failed deploy created, the endpoint first; what existed stays."""
        client = self.aws.sagemaker_client
        if "CreateEndpoint" in created and not self._endpoint_gone(name, status, poll):
            return  # it still exists: its config and model must stay under it
        for operation, delete, key in (
            ("CreateEndpointConfig", client.delete_endpoint_config, "EndpointConfigName"),
            ("CreateModel", client.delete_model, "ModelName"),
        ):
            if operation in created:
                with contextlib.suppress(Exception):
                    delete(**{key: name})

    def _endpoint_gone(self, name: str, status: str | None, poll: float) -> bool:
        """Delete the endpoint this deploy created; ``False`` if it still exists after."""
        import sys
        import time

        command = f"sm-imgclf endpoints delete {name} --backend sagemaker"
        told = False
        try:
            while status in (None, "Creating"):
                try:
                    status = str(self.describe_endpoint(name)["status"])
                except BackendError as error:
                    if "Could not find" in str(error.__cause__ or error):
                        return True  # never came to be
                    raise
                if status == "Creating":
                    if not told:
                        print(
                            f"deploy stopped: waiting for endpoint {name} to finish being "
                            "created, so it can be deleted (Ctrl-C again leaves it)",
                            file=sys.stderr,
                            flush=True,
                        )
                        told = True
                    time.sleep(poll)
            self.aws.sagemaker_client.delete_endpoint(EndpointName=name)
            return True
        except KeyboardInterrupt:
            print(
                f"stopped waiting: endpoint {name} is still being created and bills once "
                f"it is up; delete it with: {command}",
                file=sys.stderr,
                flush=True,
            )
            raise
        except Exception as error:
            print(
                f"could not delete endpoint {name} ({error}); delete it with: {command}",
                file=sys.stderr,
                flush=True,
            )
            return False

    def schedule_request(self, spec: DeploySpec) -> dict[str, Any]:
        """The validated ``CreateSchedule`` request that deletes the endpoint in time."""
        import datetime as dt

        from sm_imgclf._params import bad_value, parse_duration
        from sm_imgclf.backends.sagemaker import schedules

        seconds = parse_duration("delete_after", spec.delete_after)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        role = (
            self.aws.role_arn(spec.delete_role)
            if spec.delete_role
            else schedules.default_role(self.aws.role_arn(spec.role) or "")
        )
        problem = schedules.role_problem(role or "", self.aws.region_name)
        if problem:
            raise bad_value("delete_role", "a role Scheduler can assume", role, problem + ".")
        request = schedules.schedule_request(spec.name, when, role or "", self.aws.region_name)
        sagemaker_training.validate_request(self.aws.scheduler_client, "CreateSchedule", request)
        return request

    def _schedule_deletion(self, spec: DeploySpec) -> None:
        request = self.schedule_request(spec)
        with translate_errors("CreateSchedule", request["Name"]):
            self.aws.scheduler_client.create_schedule(**request)

    def describe_endpoint(self, name: str) -> dict[str, Any]:
        """``DescribeEndpoint``: status, failure reason and the largest request it takes.

        Serverless endpoints take 4 MB per request, instance endpoints 6 MB.
        """
        with translate_errors("DescribeEndpoint", name):
            answer = self.aws.sagemaker_client.describe_endpoint(EndpointName=name)
        serverless = any(
            "CurrentServerlessConfig" in v for v in answer.get("ProductionVariants", [])
        )
        return {
            "status": answer["EndpointStatus"],
            "failure_reason": answer.get("FailureReason"),
            "max_payload_bytes": SERVERLESS_PAYLOAD_LIMIT if serverless else PAYLOAD_LIMIT,
        }

    def invoke(self, name: str, body: bytes, content_type: str, accept: str) -> bytes:
        """``InvokeEndpoint`` through the SageMaker runtime."""
        from botocore.exceptions import ClientError

        try:
            answer = self.aws.runtime_client.invoke_endpoint(
                EndpointName=name, Body=body, ContentType=content_type, Accept=accept
            )
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            raise EndpointError(f"InvokeEndpoint {name!r} failed: {error}", status) from error
        return bytes(answer["Body"].read())

    def delete_endpoint(self, name: str) -> None:
        """Delete the endpoint, its config and its model; missing pieces are skipped."""
        from botocore.exceptions import ClientError

        client = self.aws.sagemaker_client
        self.unschedule(name)
        for delete, key in (
            (client.delete_endpoint, "EndpointName"),
            (client.delete_endpoint_config, "EndpointConfigName"),
            (client.delete_model, "ModelName"),
        ):
            try:
                delete(**{key: name})
            except ClientError as error:
                if "Could not find" not in str(error) and "does not exist" not in str(error):
                    raise BackendError(f"Deleting {name!r} failed: {error}", name=name) from error

    def unschedule(self, name: str) -> None:
        """Remove the endpoint's deletion schedule, if its tags say it has one."""
        from botocore.exceptions import ClientError

        from sm_imgclf.backends.sagemaker.schedules import schedule_name
        from sm_imgclf.contracts.tags import DELETE_AT

        try:
            arn = self.aws.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointArn"]
            tags = self.aws.sagemaker_client.list_tags(ResourceArn=arn).get("Tags", [])
        except ClientError:
            return  # no endpoint: nothing was scheduled for it by this library
        if any(t["Key"] == DELETE_AT for t in tags):
            try:
                self.aws.scheduler_client.delete_schedule(Name=schedule_name(name))
            except ClientError as error:
                if "ResourceNotFound" not in str(error):
                    raise BackendError(
                        f"Deleting the schedule of {name!r} failed: {error}", name=name
                    ) from error

    def batch_predict(self, spec: BatchSpec, *, poll: float = 30.0) -> str:
        """Create the model and a batch transform job, wait for it, return the output URI.

        The model is deleted when the transform ends, whatever its outcome.
        """
        model = self.deploy_requests(
            DeploySpec(
                spec.name,
                spec.model_uri,
                image_uri=spec.image_uri,
                role=spec.role,
                instance_type=spec.instance_type,
                tags=spec.tags,
            )
        )["CreateModel"]
        manifest = self._image_manifest(spec)
        transform = self.aws.checked(
            "CreateTransformJob", sagemaker_serving.transform_request(spec, manifest)
        )
        with translate_errors("CreateModel", spec.name):
            self.aws.sagemaker_client.create_model(**model)
        try:
            answer = self._transform(transform, poll)
        finally:  # the model exists only for this transform
            with translate_errors("DeleteModel", spec.name):
                self.aws.sagemaker_client.delete_model(ModelName=spec.name)
        if answer["TransformJobStatus"] != "Completed":
            raise BackendError(
                f"Batch transform {spec.name!r} is {answer['TransformJobStatus']}"
                f": {answer.get('FailureReason') or 'no reason given'}",
                name=spec.name,
            )
        return spec.output_uri

    def _image_manifest(self, spec: BatchSpec) -> str:
        """List the images under the input prefix into a manifest in the session's bucket."""
        from sm_imgclf.data.layout import IMAGE_EXTENSIONS
        from sm_imgclf.storage.s3 import S3Store

        prefix = sagemaker_serving.input_prefix(spec)
        bucket, _, key = prefix.removeprefix("s3://").partition("/")
        store = self.aws.store if bucket == self.aws.bucket else S3Store(self.aws.s3_client, bucket)
        images = sorted(
            found.removeprefix(key)
            for found in store.list_objects(key)
            if found.rpartition(".")[2].lower() in {e.lstrip(".") for e in IMAGE_EXTENSIONS}
            and not found.rpartition("/")[2].startswith(".")
        )
        if not images:
            raise BackendError(f"No images under {prefix} to score.", name=spec.name)
        manifest_key = f"batch/{spec.name}/input.manifest"
        self.aws.store.put_bytes(manifest_key, sagemaker_serving.image_manifest(prefix, images))
        return self.aws.store.uri(manifest_key)

    def _transform(self, transform: dict[str, Any], poll: float) -> dict[str, Any]:
        """Create the transform job and wait until it ends; return its last description."""
        import time

        name = transform["TransformJobName"]
        with translate_errors("CreateTransformJob", name):
            self.aws.sagemaker_client.create_transform_job(**transform)
        while True:
            with translate_errors("DescribeTransformJob", name):
                answer: dict[str, Any] = self.aws.sagemaker_client.describe_transform_job(
                    TransformJobName=name
                )
            if JobState(answer["TransformJobStatus"]).terminal:
                return answer
            time.sleep(poll)
