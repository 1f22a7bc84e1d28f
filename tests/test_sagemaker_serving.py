"""SageMaker endpoints: validated requests, moto over HTTP, Stubber for states moto lacks."""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

import sm_imgclf as smi
from sm_imgclf.contracts.deploy import DeploySpec

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
MODEL = "s3://sagemaker-b/jobs/j/output/model.tar.gz"


@pytest.fixture
def sm_session(moto_url: str, bucket: str, boto_session) -> smi.SageMakerSession:  # type: ignore[no-untyped-def]
    urls = {"s3": moto_url, "sagemaker": moto_url, "sagemaker-runtime": moto_url, "sts": moto_url}
    return smi.SageMakerSession(bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls)


def test_deploy_requests(sm_session: smi.SageMakerSession) -> None:
    backend = sm_session.backend
    requests = backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, image_uri=IMAGE, role=ROLE, instance_type="ml.g4dn.xlarge")
    )
    container = requests["CreateModel"]["PrimaryContainer"]
    assert container["ModelDataUrl"] == MODEL and container["Image"] == IMAGE
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert container["Environment"]["SM_IMGCLF_TOP_K"] == "5"
    assert container["Environment"]["SM_IMGCLF_FORWARD"] == "auto"
    variant = requests["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.g4dn.xlarge" and variant["InitialInstanceCount"] == 1
    tuned = backend.deploy_requests(  # type: ignore[attr-defined]
        smi.DeployOptions(
            image_uri=IMAGE, top_k=2, forward="onnxruntime", decode_threads=3, max_pixels=1000
        ).spec("dogs", MODEL, role=ROLE)
    )
    assert {
        k: v
        for k, v in tuned["CreateModel"]["PrimaryContainer"]["Environment"].items()
        if k.startswith("SM_IMGCLF_")
    } == {
        "SM_IMGCLF_TOP_K": "2",
        "SM_IMGCLF_FORWARD": "onnxruntime",
        "SM_IMGCLF_DECODE_THREADS": "3",
        "SM_IMGCLF_MAX_PIXELS": "1000",
    }
    serverless = backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, image_uri=IMAGE, role=ROLE, serverless_memory_mb=3072)
    )
    assert serverless["CreateEndpointConfig"]["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 3072,
        "MaxConcurrency": 5,
    }


@pytest.mark.parametrize(
    ("instance", "workers", "threads"),
    [
        ("ml.m5.large", "1", "2"),  # 2 vCPUs: the container's default would be 2 x 2 threads
        ("ml.c5.xlarge", "1", "4"),
        ("ml.c5.4xlarge", "4", "4"),
        ("ml.m5.24xlarge", "24", "4"),
        ("ml.g4dn.xlarge", "1", "4"),  # 4 vCPUs, 1 GPU
        ("ml.g4dn.12xlarge", "4", "12"),  # 48 vCPUs, 4 GPUs
        ("ml.p3.16xlarge", "8", "8"),
    ],
)
def test_endpoint_workers_and_threads_fit_the_instance(
    sm_session: smi.SageMakerSession, instance: str, workers: str, threads: str
) -> None:
    requests = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, image_uri=IMAGE, role=ROLE, instance_type=instance)
    )
    environment = requests["CreateModel"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == workers
    assert environment["OMP_NUM_THREADS"] == threads


def test_endpoint_environment_defaults_and_overrides(sm_session: smi.SageMakerSession) -> None:
    def environment(**options: object) -> dict[str, str]:
        requests = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
            DeploySpec("dogs", MODEL, image_uri=IMAGE, role=ROLE, **options)
        )  # type: ignore[arg-type]
        return dict(requests["CreateModel"]["PrimaryContainer"]["Environment"])

    assert environment(serverless_memory_mb=2048)["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    unknown = environment(instance_type="ml.inf2.xlarge")  # not in the table: defaults stay
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in unknown and "OMP_NUM_THREADS" not in unknown
    mine = environment(
        instance_type="ml.m5.xlarge",
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "MY_FLAG": "on"},
    )
    assert mine["SAGEMAKER_MODEL_SERVER_WORKERS"] == "2" and mine["MY_FLAG"] == "on"
    assert mine["OMP_NUM_THREADS"] == "4"
    with pytest.raises(smi.ConfigurationError, match="environment must be"):
        DeploySpec("dogs", MODEL, environment={"N": 2})  # type: ignore[arg-type]


RAY = "763104351884.dkr.ecr.us-east-1.amazonaws.com/ray:serve-ml-sagemaker"


def test_serverless_without_an_image_gets_the_cpu_ray_serve_image(
    sm_session: smi.SageMakerSession,
) -> None:
    requests = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, role=ROLE, serverless_memory_mb=2048)
    )
    assert requests["CreateModel"]["PrimaryContainer"]["Image"] == f"{RAY}-cpu-v1"


def test_a_default_gpu_endpoint_serves_on_ray_with_the_inference_ami(
    sm_session: smi.SageMakerSession,
) -> None:
    gpu = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, role=ROLE, instance_type="ml.g5.xlarge")
    )  # checked against SageMaker's service model on the way
    container = gpu["CreateModel"]["PrimaryContainer"]
    assert container["Image"] == f"{RAY}-cuda-v1"
    # config.yaml in the package says what to run: no TorchServe settings.
    assert not any(k.startswith("SAGEMAKER_") for k in container["Environment"])
    assert container["Environment"]["SM_IMGCLF_TOP_K"] == "5"
    variant = gpu["CreateEndpointConfig"]["ProductionVariants"][0]
    assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-3-1"
    cpu = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, role=ROLE, instance_type="ml.c7i.xlarge")
    )
    assert cpu["CreateModel"]["PrimaryContainer"]["Image"] == f"{RAY}-cpu-v1"
    assert "InferenceAmiVersion" not in cpu["CreateEndpointConfig"]["ProductionVariants"][0]
    # A TorchServe image given by hand keeps its settings and gets no AMI.
    old = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, image_uri=IMAGE, role=ROLE, instance_type="ml.g5.xlarge")
    )
    assert "InferenceAmiVersion" not in old["CreateEndpointConfig"]["ProductionVariants"][0]
    assert old["CreateModel"]["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"]


def test_a_misspelt_inference_ami_is_refused_before_any_call(
    sm_session: smi.SageMakerSession,
) -> None:
    from sm_imgclf.backends.sagemaker.training import validate_request

    gpu = sm_session.backend.deploy_requests(  # type: ignore[attr-defined]
        DeploySpec("dogs", MODEL, role=ROLE, instance_type="ml.g5.xlarge")
    )
    config = gpu["CreateEndpointConfig"]
    config["ProductionVariants"][0]["InferenceAmiVersion"] = "al2-ami-gpu-9"
    client = sm_session.backend.aws.sagemaker_client  # type: ignore[attr-defined]
    with pytest.raises(smi.ConfigurationError, match="InferenceAmiVersion"):
        validate_request(client, "CreateEndpointConfig", config)


def test_bad_deploy_values() -> None:
    with pytest.raises(smi.ConfigurationError, match="serverless_memory_mb must be"):
        DeploySpec("e", MODEL, serverless_memory_mb=1000)
    with pytest.raises(smi.ConfigurationError, match="instance_count must be"):
        DeploySpec("e", MODEL, instance_count=0)


def test_missing_role_and_local_package(sm_session: smi.SageMakerSession) -> None:
    backend = sm_session.backend
    with pytest.raises(smi.ConfigurationError, match="needs an IAM role"):
        backend.deploy_requests(DeploySpec("e", MODEL, image_uri=IMAGE))  # type: ignore[attr-defined]
    with pytest.raises(smi.ConfigurationError, match="from S3"):
        backend.deploy_requests(  # type: ignore[attr-defined]
            DeploySpec("e", "file:///tmp/model.tar.gz", image_uri=IMAGE, role=ROLE)
        )


def test_deploy_and_delete_against_moto(
    sm_session: smi.SageMakerSession,
    boto_session,  # type: ignore[no-untyped-def]
    moto_url: str,
) -> None:
    backend = sm_session.backend
    backend.deploy(DeploySpec("digits", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    assert client.describe_model(ModelName="digits")["PrimaryContainer"]["ModelDataUrl"] == MODEL
    assert smi.EndpointClient.attach("digits", sm_session).name == "digits"
    smi.EndpointClient("digits", sm_session).delete()
    assert client.list_endpoints()["Endpoints"] == []
    assert client.list_models()["Models"] == []


CONFIG = {
    "EndpointConfigName": "e",
    "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/e",
    "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "e"}],
    "CreationTime": 0,
}


def endpoint_state(status: str) -> dict[str, object]:
    return {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e",
        "EndpointConfigName": "e",
        "EndpointStatus": status,
        "CreationTime": 0,
        "LastModifiedTime": 0,
    }


def created_up_to_the_endpoint(stub: Stubber, *, config_visible_at_once: bool = True) -> None:
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/e"})
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/e"},
    )
    if not config_visible_at_once:
        stub.add_client_error(
            "describe_endpoint_config",
            "ValidationException",
            'Could not find endpoint configuration "e".',
        )
    stub.add_response("describe_endpoint_config", CONFIG, {"EndpointConfigName": "e"})
    stub.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}
    )


def test_the_endpoint_is_created_once_its_config_is_visible(
    sm_session: smi.SageMakerSession,
) -> None:
    backend = sm_session.backend
    with Stubber(backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        created_up_to_the_endpoint(stub, config_visible_at_once=False)
        stub.add_response("describe_endpoint", endpoint_state("InService"), {"EndpointName": "e"})
        backend.deploy(DeploySpec("e", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
        stub.assert_no_pending_responses()


def test_an_interrupted_deploy_never_deletes_what_a_live_endpoint_uses(
    sm_session: smi.SageMakerSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = sm_session.backend
    endpoints = backend.endpoints  # type: ignore[attr-defined]

    def interrupted(name: str, poll: float, last: dict[str, str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(endpoints, "_wait_until_up", interrupted)
    with Stubber(backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        created_up_to_the_endpoint(stub)
        # Ctrl-C while Creating: wait until SageMaker will delete it, then endpoint first.
        for status in ("Creating", "InService"):
            stub.add_response("describe_endpoint", endpoint_state(status), {"EndpointName": "e"})
        stub.add_response("delete_endpoint", {}, {"EndpointName": "e"})
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "e"})
        stub.add_response("delete_model", {}, {"ModelName": "e"})
        with pytest.raises(KeyboardInterrupt):
            backend.deploy(DeploySpec("e", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
        stub.assert_no_pending_responses()
    assert "Ctrl-C again leaves it" in capsys.readouterr().err

    # Ctrl-C again while it is still Creating: nothing is deleted, and the user is told how.
    states = iter([{"status": "Creating"}])

    def still_creating(name: str) -> dict[str, str]:
        state = next(states, None)
        if state is None:
            raise KeyboardInterrupt
        return state

    monkeypatch.setattr(endpoints, "describe_endpoint", still_creating)
    with Stubber(backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        created_up_to_the_endpoint(stub)
        with pytest.raises(KeyboardInterrupt):
            backend.deploy(DeploySpec("e", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
        stub.assert_no_pending_responses()  # no delete of the endpoint, its config or model
    assert "sm-imgclf endpoints delete e --backend sagemaker" in capsys.readouterr().err


def test_failed_endpoint_reports_the_reason(sm_session: smi.SageMakerSession) -> None:
    backend = sm_session.backend
    with Stubber(backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/e"})
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/e"},
        )
        stub.add_response("describe_endpoint_config", CONFIG, {"EndpointConfigName": "e"})
        stub.add_response(
            "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e"}
        )
        for status in ("Creating", "Failed"):
            stub.add_response(
                "describe_endpoint",
                {
                    "EndpointName": "e",
                    "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e",
                    "EndpointStatus": status,
                    "CreationTime": 0,
                    "LastModifiedTime": 0,
                    **(
                        {
                            "FailureReason": "The primary container did not pass the ping health "
                            "check."
                        }
                        if status == "Failed"
                        else {}
                    ),
                },
                {"EndpointName": "e"},
            )
        # A failed deploy removes what it created, so trying again can succeed.
        stub.add_response("delete_endpoint", {}, {"EndpointName": "e"})
        stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "e"})
        stub.add_response("delete_model", {}, {"ModelName": "e"})
        with pytest.raises(smi.BackendError, match="ping health check"):
            backend.deploy(DeploySpec("e", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
        stub.assert_no_pending_responses()


def test_a_deploy_that_meets_a_name_in_use_removes_only_what_it_created(
    sm_session: smi.SageMakerSession,
) -> None:
    backend = sm_session.backend
    with Stubber(backend.aws.sagemaker_client) as stub:  # type: ignore[attr-defined]
        stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/e"})
        stub.add_client_error(
            "create_endpoint_config",
            "ValidationException",
            "Cannot create already existing endpoint configuration",
        )
        stub.add_response("delete_model", {}, {"ModelName": "e"})
        with pytest.raises(smi.BackendError, match="already existing"):
            backend.deploy(DeploySpec("e", MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
        stub.assert_no_pending_responses()  # the config in use was left alone


def test_invoke_retries_throttling(sm_session: smi.SageMakerSession) -> None:
    answer = json.dumps(
        {
            "predictions": [
                {"top_k": [{"index": 3, "class_id": "004.cat", "label": "cat", "probability": 0.7}]}
            ]
        }
    ).encode()
    runtime = sm_session.backend.aws.runtime_client  # type: ignore[attr-defined]
    with Stubber(runtime) as stub:
        stub.add_client_error(
            "invoke_endpoint", service_error_code="ThrottlingException", http_status_code=429
        )
        stub.add_response(
            "invoke_endpoint",
            {
                "Body": StreamingBody(io.BytesIO(answer), len(answer)),
                "ContentType": "application/json",
            },
        )
        prediction = smi.EndpointClient("e", sm_session).predict(b"\xff\xd8 jpeg bytes")
    assert (prediction.label, prediction.index, prediction.score) == ("cat", 3, 0.7)


def test_serverless_requests_stay_under_4_mb(sm_session: smi.SageMakerSession) -> None:
    answer = json.dumps(
        {
            "predictions": [
                {"top_k": [{"index": 3, "class_id": "004.cat", "label": "cat", "probability": 0.7}]}
            ]
        }
    ).encode()
    backend = sm_session.backend
    images = [bytes([i]) * 2_000_000 for i in range(2)]  # ~5.3 MB in one JSON request
    with (
        Stubber(backend.aws.sagemaker_client) as control,
        Stubber(backend.aws.runtime_client) as runtime,
    ):  # type: ignore[attr-defined]
        control.add_response(
            "describe_endpoint",
            {
                "EndpointName": "e",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/e",
                "EndpointStatus": "InService",
                "CreationTime": 0,
                "LastModifiedTime": 0,
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                    }
                ],
            },
            {"EndpointName": "e"},
        )
        for _ in images:  # one request each: together they pass the serverless limit
            runtime.add_response(
                "invoke_endpoint",
                {
                    "Body": StreamingBody(io.BytesIO(answer), len(answer)),
                    "ContentType": "application/json",
                },
            )
        client = smi.EndpointClient("e", sm_session)
        assert len(client.predict(images)) == 2
        runtime.assert_no_pending_responses()
    assert client.max_payload_bytes == 4 * 1024 * 1024


def test_client_errors_are_not_retried(sm_session: smi.SageMakerSession) -> None:
    runtime = sm_session.backend.aws.runtime_client  # type: ignore[attr-defined]
    with Stubber(runtime) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=400,
            service_message="Cannot decode the image",
        )
        with pytest.raises(smi.EndpointError, match="Cannot decode") as caught:
            smi.EndpointClient("e", sm_session).predict(b"garbage")
    assert caught.value.status == 400


def test_batch_transform_against_moto(
    sm_session: smi.SageMakerSession,
    boto_session,  # type: ignore[no-untyped-def]
    moto_url: str,
) -> None:
    from sm_imgclf.contracts.deploy import BatchSpec

    store = sm_session.store
    for key in (
        "inbox/a.jpg",
        "inbox/day2/b.PNG",
        "inbox/notes.csv",
        "inbox/.DS_Store",
        "inbox_old/c.jpg",
    ):
        store.put_bytes(key, b"...")
    inbox = store.uri("inbox")  # no trailing slash: inbox_old/ must not be read
    spec = BatchSpec(
        "score-1",
        MODEL,
        inbox,
        store.uri("scores/"),
        image_uri=IMAGE,
        role=ROLE,
        top_k=3,
        instance_type="ml.c5.4xlarge",
    )
    assert sm_session.backend.batch_predict(spec, poll=0) == store.uri("scores/")  # type: ignore[call-arg]
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    job = client.describe_transform_job(TransformJobName="score-1")
    assert job["TransformInput"]["ContentType"] == "application/x-image"
    assert job["Environment"] == {"SM_IMGCLF_TOP_K": "3"}
    assert job["MaxConcurrentTransforms"] == 4  # the instance's TorchServe workers
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile"
    manifest = json.loads(store.get_bytes(source["S3Uri"].removeprefix(store.uri(""))))
    assert manifest == [{"prefix": store.uri("inbox/")}, "a.jpg", "day2/b.PNG"]
    with pytest.raises(smi.ConfigurationError, match="input_uri must be an s3:// prefix"):
        sm_session.backend.batch_predict(  # type: ignore[call-arg]
            BatchSpec("score-2", MODEL, "file:///tmp/imgs", store.uri("s/"), role=ROLE), poll=0
        )
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match=r"(?i)could not find|does not exist|not found"):
        client.describe_model(ModelName="score-1")  # removed once the transform ended


def test_batch_predict_twice_from_one_job_uses_two_names() -> None:
    backend = smi.FakeBackend()
    session = smi.Session(backend)
    job = smi.TransferLearningEstimator("resnet18", session=session).fit(
        {"train": "memory://fake/train"}, wait=False, name="digits-1"
    )
    backend.complete(job.name)
    for _ in range(2):
        job.batch_predict("s3://b/inbox/", "s3://b/scores/")
    first, second = (spec.name for spec in backend.batches)
    assert first != second and first.startswith("digits-1-batch-")
