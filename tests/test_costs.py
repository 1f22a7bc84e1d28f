"""Money before it is spent: prices, estimates, budgets, tags, resources, cleanup, schedules."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from pathlib import Path

import pytest
from botocore.stub import Stubber

import sm_imgclf as smi
from sm_imgclf.backends.sagemaker.prices import TABLE_DATE, PriceBook, hourly_usd
from sm_imgclf.backends.sagemaker.schedules import DELETE_TARGET, schedule_name
from sm_imgclf.contracts.deploy import BatchSpec, DeploySpec
from sm_imgclf.contracts.resources import Resource, select

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TRAIN_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311"
MODEL = "s3://sagemaker-b/jobs/j/output/model.tar.gz"
# A frozen head with augmentation runs the backbone every epoch, on the training instance.
AUGMENTED = {"augmentation": "light"}
CHANNELS = {"train": "s3://b/data/train", "valid": "s3://b/data/valid"}
NOWHERE = "http://127.0.0.1:9"  # nothing listens: the Price List API is unreachable


def product(instance: str, use: str, usd: str, unit: str = "Hrs") -> str:
    """One ``PriceList`` entry as the Price List API returns it: a JSON document as a string."""
    sku = uuid.uuid4().hex[:16].upper()
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "sku": sku,
                "attributes": {
                    "instanceName": instance,
                    "platoinstancetype": use,
                    "regionCode": "us-east-1",
                    "usagetype": f"USE1-{use}:{instance}",
                    "location": "US East (N. Virginia)",
                },
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": unit,
                                "pricePerUnit": {"USD": usd},
                                "description": "per hour",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "appliesTo": [],
                            }
                        },
                        "sku": sku,
                        "offerTermCode": "JRTCKXETXF",
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20261101000000",
            "publicationDate": "2026-11-01T00:00:00Z",
        }
    )


def filters(instance: str, use: str) -> list[dict[str, str]]:
    return [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in (
            ("productFamily", "ML Instance"),
            ("regionCode", "us-east-1"),
            ("instanceName", instance),
            ("platoinstancetype", use),
        )
    ]


@pytest.fixture
def sm_session(
    moto_url: str,
    bucket: str,
    boto_session,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> smi.SageMakerSession:
    urls = {"s3": moto_url, "sagemaker": moto_url, "scheduler": moto_url, "pricing": NOWHERE}
    session = smi.SageMakerSession(
        bucket, role=ROLE, boto_session=boto_session, endpoint_urls=urls, tags={"team": "vision"}
    )
    session.backend.price_cache = tmp_path / "prices.json"  # type: ignore[attr-defined]
    return session


# Bad input first -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "named"), [(0, "max_cost"), (-1.0, "max_cost"), ("5", "max_cost")]
)
def test_bad_budgets_are_refused(value: object, named: str) -> None:
    session = smi.Session(smi.FakeBackend())
    with pytest.raises(smi.ConfigurationError, match=named):
        smi.TransferLearningEstimator("resnet18", session=session, max_cost=value)  # type: ignore[arg-type]


def test_a_budget_needs_a_known_price_and_a_minute(sm_session: smi.SageMakerSession) -> None:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        max_cost=5.0,
        compute=smi.Compute(image_uri=TRAIN_IMAGE, instance_type="ml.inf2.xlarge"),
    )
    with pytest.raises(smi.ConfigurationError, match=r"known price for ml\.inf2\.xlarge"):
        est.dry_run(CHANNELS)
    tiny = smi.TransferLearningEstimator(
        "resnet18", session=sm_session, max_cost=0.001, compute=smi.Compute(image_uri=TRAIN_IMAGE)
    )
    with pytest.raises(smi.ConfigurationError, match="one minute"):
        tiny.dry_run(CHANNELS)


@pytest.mark.parametrize("text", ["soon", "4", "4x", "-2h", "0m", ""])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(smi.ConfigurationError, match="delete_after"):
        DeploySpec("e", MODEL, delete_after=text)


def test_cleanup_refuses_to_choose_everything() -> None:
    with pytest.raises(smi.ConfigurationError, match="Say what to clean up"):
        select([])


# Prices ----------------------------------------------------------------------------------


def test_prices_from_the_api_for_a_cpu_and_a_gpu_type_then_from_the_cache(tmp_path: Path) -> None:
    import boto3

    client = boto3.Session(region_name="us-east-1").client("pricing")
    book = PriceBook(
        "us-east-1", lambda: client, cache=tmp_path / "prices.json", today=dt.date(2026, 11, 30)
    )
    with Stubber(client) as stub:
        for instance, use, usd in (
            ("ml.m5.xlarge", "Training", "0.2300000000"),
            ("ml.g4dn.xlarge", "Hosting", "0.7360000000"),
        ):
            stub.add_response(
                "get_products",
                {
                    "FormatVersion": "aws_v1",
                    "PriceList": [
                        product(instance, use, "0.0000000000"),  # a free-tier row is not the price
                        product(instance, use, usd),
                    ],
                },
                {
                    "ServiceCode": "AmazonSageMaker",
                    "MaxResults": 100,
                    "Filters": filters(instance, use),
                },
            )
        cpu = book.price("ml.m5.xlarge", "training")
        gpu = book.price("ml.g4dn.xlarge", "hosting")
        stub.assert_no_pending_responses()
    assert cpu is not None and cpu.usd_per_hour == 0.23 and cpu.source == "AWS Price List API"
    assert gpu is not None and gpu.usd_per_hour == 0.736 and gpu.as_of == "2026-11-30"
    # Read again within the cache's life: no request (the Stubber would refuse one).
    again = PriceBook(
        "us-east-1", lambda: client, cache=tmp_path / "prices.json", today=dt.date(2026, 12, 20)
    )
    with Stubber(client):
        assert again.price("ml.g4dn.xlarge", "hosting") == gpu


def test_an_unreachable_api_falls_back_to_the_dated_table(tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.Session(region_name="us-east-1").client(
        "pricing", endpoint_url=NOWHERE, config=Config(retries={"total_max_attempts": 1})
    )
    book = PriceBook("us-east-1", lambda: client, cache=tmp_path / "prices.json")
    found = book.price("ml.g4dn.xlarge", "training")
    assert found is not None and found.usd_per_hour == 0.736
    assert found.source == "the library's table" and found.as_of == TABLE_DATE
    assert "EndpointConnectionError" in (book.api_failure or "")
    assert book.price("ml.trn1.32xlarge", "training") is None  # unknown: no guess
    assert PriceBook("eu-west-1").price("ml.m5.large", "training") is None  # table: us-east-1
    assert not (tmp_path / "prices.json").exists()  # table figures are not cached as API ones


def test_hourly_usd_reads_only_hourly_nonzero_on_demand_prices() -> None:
    assert hourly_usd([product("ml.m5.large", "Training", "0.115")]) == 0.115
    assert hourly_usd([product("ml.m5.large", "Training", "3.5", unit="GB-Mo")]) is None
    assert hourly_usd([]) is None


# Estimates and budgets -------------------------------------------------------------------


def test_estimates_for_training_tuning_endpoints_and_transforms(
    sm_session: smi.SageMakerSession,
) -> None:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        hyperparameters=AUGMENTED,  # each trial on the GPU instance, not on cached features
        compute=smi.Compute(image_uri=TRAIN_IMAGE, max_run=7200, use_spot=True),
    )
    training = est.estimate(CHANNELS)
    assert training.on_demand_usd == pytest.approx(0.736 * 2)
    assert training.spot_usd == pytest.approx(0.736 * 2 * 0.3)
    assert f"the library's table, {TABLE_DATE}" in str(training) and "spot" in str(training)
    run = smi.TuningRun(
        est,
        {"lr": smi.Continuous(1e-4, 1e-1, scale="log")},
        max_jobs=6,
        max_parallel_jobs=2,
        in_one_job=False,
    )
    assert run.estimate(CHANNELS).on_demand_usd == pytest.approx(0.736 * 2 * 6)
    endpoint = sm_session.estimate(
        DeploySpec("e", MODEL, instance_type="ml.m5.large", instance_count=2)
    )
    assert endpoint.on_demand_usd == pytest.approx(0.23) and "per 30 days" in str(endpoint)
    assert "per request-second" in str(
        sm_session.estimate(DeploySpec("e", MODEL, serverless_memory_mb=2048))
    )
    batch = sm_session.estimate(BatchSpec("b", MODEL, "s3://b/in/", "s3://b/out/"))
    assert batch.price is not None and batch.price.use == "transform"
    unknown = sm_session.estimate(DeploySpec("e", MODEL, instance_type="ml.inf2.xlarge"))
    assert unknown.usd is None and "nothing is guessed" in str(unknown)


def test_max_cost_caps_the_run_and_says_so(sm_session: smi.SageMakerSession) -> None:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        max_cost=5.0,
        compute=smi.Compute(image_uri=TRAIN_IMAGE, use_spot=True),
    )
    request = est.dry_run(CHANNELS)
    seconds = int(5.0 / 0.736 * 3600)
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == seconds
    assert request["StoppingCondition"]["MaxWaitTimeInSeconds"] >= seconds
    text = str(est.estimate(CHANNELS))
    assert f"caps the run at {seconds / 3600:,.2f} h" in text and "at most $5.00" in text
    loose = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        max_cost=100.0,
        compute=smi.Compute(image_uri=TRAIN_IMAGE, max_run=600),
    )
    assert loose.dry_run(CHANNELS)["StoppingCondition"]["MaxRuntimeInSeconds"] == 600
    assert "max_run (0.17 h) is the tighter bound" in str(loose.estimate(CHANNELS))


def test_a_tuning_budget_bounds_the_runs_wall_time(sm_session: smi.SageMakerSession) -> None:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        hyperparameters=AUGMENTED,
        compute=smi.Compute(image_uri=TRAIN_IMAGE),
    )
    run = smi.TuningRun(
        est,
        {"lr": smi.Continuous(1e-4, 1e-1, scale="log")},
        max_jobs=20,
        max_parallel_jobs=4,
        max_cost=30.0,
        in_one_job=False,
    )
    limits = run.dry_run(CHANNELS)["HyperParameterTuningJobConfig"]["ResourceLimits"]
    seconds = int(30.0 / (0.736 * 4) * 3600)
    assert limits["MaxRuntimeInSeconds"] == seconds  # validated against the service model
    estimate = run.estimate(CHANNELS)
    assert estimate.on_demand_usd == pytest.approx(30.0, rel=1e-3)
    assert "stops the run after" in str(estimate)


def test_local_and_fake_estimates(tmp_path: Path) -> None:
    local = smi.TransferLearningEstimator(
        "resnet18", session=smi.LocalSession(tmp_path), weights=None, max_cost=1.0
    )
    text = str(local.estimate({"train": (tmp_path / "d").as_uri()}))
    assert "$0.00" in text and "no AWS charge" in text
    fake = smi.FakeBackend()
    fake.prices["ml.g4dn.xlarge"] = 2.0
    est = smi.TransferLearningEstimator(
        "resnet18", session=smi.Session(fake), compute=smi.Compute(max_run=1800)
    )
    assert est.estimate({"train": "memory://fake/train"}).on_demand_usd == pytest.approx(1.0)


# Tags ------------------------------------------------------------------------------------


def library_tags(session: smi.SageMakerSession) -> dict[str, str]:
    return {
        "team": "vision",
        "sm-imgclf:created-by": "sm-imgclf",
        "sm-imgclf:version": smi.__version__,
        "sm-imgclf:session": session.backend.aws.session_id,
    }  # type: ignore[attr-defined]


def test_every_create_call_carries_the_tags(
    sm_session: smi.SageMakerSession,
    boto_session,  # type: ignore[no-untyped-def]
    moto_url: str,
) -> None:
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    expected = library_tags(sm_session)
    name = f"tags-{uuid.uuid4().hex[:8]}"
    sm_session.backend.deploy(
        DeploySpec(
            name,
            MODEL,
            image_uri=IMAGE,
            role=ROLE,  # type: ignore[call-arg]
            tags={"owner": "ana"},
        ),
        poll=0,
    )
    arns = [
        client.describe_model(ModelName=name)["ModelArn"],
        client.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"],
        client.describe_endpoint(EndpointName=name)["EndpointArn"],
    ]
    for arn in arns:
        tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=arn)["Tags"]}
        assert tags == {**expected, "owner": "ana"}, arn
    request = smi.TransferLearningEstimator(
        "resnet18", session=sm_session, compute=smi.Compute(image_uri=TRAIN_IMAGE)
    ).dry_run(CHANNELS)
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == expected
    run = smi.TuningRun(
        smi.TransferLearningEstimator(
            "resnet18", session=sm_session, compute=smi.Compute(image_uri=TRAIN_IMAGE)
        ),
        {"lr": smi.Continuous(1e-4, 1e-1)},
        max_jobs=2,
        in_one_job=False,
    )
    assert {t["Key"]: t["Value"] for t in run.dry_run(CHANNELS)["Tags"]} == expected
    sm_session.store.put_bytes("in/a.jpg", b"...")  # the transform lists what it scores
    transform = BatchSpec(
        f"{name}-b",
        MODEL,
        sm_session.store.uri("in/"),
        sm_session.store.uri("out/"),
        image_uri=IMAGE,
        role=ROLE,
    )
    sm_session.backend.batch_predict(transform, poll=0)  # type: ignore[call-arg]
    arn = client.describe_transform_job(TransformJobName=transform.name)["TransformJobArn"]
    tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == expected
    sm_session.backend.delete_endpoint(name)


# Resources and cleanup -------------------------------------------------------------------


def other_endpoint(client, name: str) -> None:  # type: ignore[no-untyped-def]
    """An endpoint made without the library, with a config and model of other names."""
    client.create_model(
        ModelName=f"{name}-m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    client.create_endpoint_config(
        EndpointConfigName=f"{name}-c",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": f"{name}-m",
                "InstanceType": "ml.g4dn.xlarge",
                "InitialInstanceCount": 2,
            }
        ],
    )
    client.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-c")


def test_resources_and_cleanup_find_exactly_what_they_should(
    sm_session: smi.SageMakerSession, boto_session, moto_url: str
) -> None:  # type: ignore[no-untyped-def]
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    ours, theirs = f"ours-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    sm_session.backend.deploy(DeploySpec(ours, MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
    other_endpoint(client, theirs)
    found = {r.name: r for r in sm_session.resources() if r.name in (ours, theirs)}
    assert found[ours].by_library and not found[theirs].by_library
    assert found[theirs].usd_per_hour == pytest.approx(2 * 0.736)
    assert found[ours].price is not None and found[ours].price.use == "hosting"
    assert sm_session.cleanup([ours, theirs], dry_run=True) and {
        e["EndpointName"] for e in client.list_endpoints()["Endpoints"]
    } >= {ours, theirs}
    gone = sm_session.cleanup([ours, theirs], by_library=True)
    assert [r.name for r in gone] == [ours]
    names = {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    assert ours not in names and theirs in names
    sm_session.cleanup([theirs])
    assert theirs not in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    models = {m["ModelName"] for m in client.list_models()["Models"]}
    assert f"{theirs}-m" not in models and ours not in models  # configs and models went too


def test_select_by_age_and_tag() -> None:
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)

    def made(name: str, hours: float, tags: tuple = ()) -> Resource:
        return Resource(
            "endpoint",
            name,
            "InService",
            now - dt.timedelta(hours=hours),
            "ml.m5.large",
            1,
            tags,
            True,
        )

    items = [made("old", 5), made("new", 1), made("tagged", 3, (("team", "a"),))]
    assert [r.name for r in select(items, older_than="2h", now=now)] == ["old", "tagged"]
    assert [r.name for r in select(items, tags={"team": "a"}, now=now)] == ["tagged"]
    assert select(items, older_than="2h", tags={"team": "b"}, now=now) == []


# Endpoints that delete themselves ---------------------------------------------------------


def test_delete_after_schedules_the_deletion_and_an_early_delete_removes_it(
    sm_session: smi.SageMakerSession, boto_session, moto_url: str
) -> None:  # type: ignore[no-untyped-def]
    scheduler = boto_session.client("scheduler", endpoint_url=moto_url)
    name = f"timed-{uuid.uuid4().hex[:8]}"
    spec = DeploySpec(name, MODEL, image_uri=IMAGE, role=ROLE, delete_after="4h")
    request = sm_session.backend.schedule_request(spec)  # type: ignore[attr-defined]
    assert (
        request["Target"]["Arn"]
        == DELETE_TARGET
        == ("arn:aws:scheduler:::aws-sdk:sagemaker:deleteEndpoint")
    )
    assert json.loads(request["Target"]["Input"]) == {"EndpointName": name}
    assert request["Target"]["RoleArn"] == (
        "arn:aws:iam::123456789012:role/sm-imgclf-endpoint-deleter"
    )
    assert request["ActionAfterCompletion"] == "DELETE"
    when = dt.datetime.fromisoformat(re.fullmatch(r"at\((.*)\)", request["ScheduleExpression"])[1])
    expected = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=4)
    assert abs((when - expected).total_seconds()) < 120
    sm_session.backend.deploy(spec, poll=0)  # type: ignore[call-arg]
    assert scheduler.get_schedule(Name=schedule_name(name))["Target"]["Arn"] == DELETE_TARGET
    smi.EndpointClient(name, sm_session).delete()
    names = {s["Name"] for s in scheduler.list_schedules()["Schedules"]}
    assert schedule_name(name) not in names


def test_a_schedule_follows_the_regions_partition() -> None:
    from sm_imgclf.backends.sagemaker.schedules import default_role, role_problem, schedule_request

    china = "arn:aws-cn:iam::123456789012:role/SageMakerRole"
    assert default_role(china) == "arn:aws-cn:iam::123456789012:role/sm-imgclf-endpoint-deleter"
    when = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)
    request = schedule_request("e", when, default_role(china), "cn-north-1")
    assert request["Target"]["Arn"] == "arn:aws-cn:scheduler:::aws-sdk:sagemaker:deleteEndpoint"
    assert role_problem(default_role(china), "cn-north-1") is None
    assert "'aws-cn' partition" in (role_problem(default_role(china), "us-east-1") or "")
    assert "IAM role ARN" in (role_problem("sm-imgclf-endpoint-deleter", "us-east-1") or "")


def test_a_bad_delete_role_is_refused_before_the_endpoint_is_created(
    sm_session: smi.SageMakerSession, boto_session, moto_url: str
) -> None:  # type: ignore[no-untyped-def]
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    name = f"timed-{uuid.uuid4().hex[:8]}"
    role = "arn:aws-cn:iam::123456789012:role/Deleter"
    spec = DeploySpec(name, MODEL, image_uri=IMAGE, role=ROLE, delete_after="4h", delete_role=role)
    with pytest.raises(smi.ConfigurationError, match=r"delete_role .* partition"):
        sm_session.backend.deploy(spec, poll=0)  # type: ignore[call-arg]
    assert name not in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    assert name not in {m["ModelName"] for m in client.list_models()["Models"]}


def test_schedule_names_fit_the_services_limit() -> None:
    long = "e" * 63
    assert len(schedule_name(long)) <= 64 and schedule_name(long) != schedule_name("e" * 62)


# Command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, moto_url: str, bucket: str, tmp_path: Path
) -> list[str]:
    # botocore sends every service to this endpoint; pricing too, which moto lacks.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return ["--backend", "sagemaker", "--bucket", bucket, "--region", "us-east-1"]


def test_cli_resources_and_cleanup(
    cli_env: list[str],
    boto_session,
    moto_url: str,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sm_imgclf.cli.main import main

    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    other_endpoint(client, name)
    assert main(["resources", *cli_env]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"endpoint  {name}"))
    assert "2 x ml.g4dn.xlarge" in row and "1.472" in row and row.rstrip().endswith("no")
    assert main(["cleanup", name, "--dry-run", *cli_env]) == 0
    assert "would be removed; nothing was" in capsys.readouterr().out
    assert name in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a terminal: never a yes
    assert main(["cleanup", name, *cli_env]) == 2
    assert "confirmation" in capsys.readouterr().err
    assert name in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    assert main(["cleanup", name, "--yes", "--json", *cli_env]) == 0
    printed = capsys.readouterr().out  # moto, in this process, prints about pricing first
    assert json.loads(printed[printed.index("[\n") :])[0]["name"] == name
    assert name not in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    assert main(["cleanup", *cli_env]) == 2
    assert "Say what to clean up" in capsys.readouterr().err


def test_a_local_endpoint_stops_itself_after_delete_after(tmp_path: Path) -> None:
    import time

    from test_evaluation_report import untrained_package

    session = smi.LocalSession(tmp_path / "session")
    package = untrained_package(tmp_path)
    session.backend.deploy(DeploySpec("short-lived", package.as_uri(), delete_after="2s"))
    deadline = time.monotonic() + 120  # a guard against a hang, not a timing assertion
    while session.backend.describe_endpoint("short-lived")["status"] == "InService":
        assert time.monotonic() < deadline, "the endpoint never stopped"
        time.sleep(0.2)
    assert session.backend.describe_endpoint("short-lived")["status"] == "Deleted"
    assert session.resources() == []
    log = (tmp_path / "session" / "endpoints" / "short-lived" / "server.log").read_text()
    assert "delete_after time has come" in log
    assert re.search(r"forward: (eager|channels_last|onnxruntime) \(.*ms", log)  # measured


def test_a_tuning_budget_below_sagemakers_shortest_limit_is_refused(
    sm_session: smi.SageMakerSession,
) -> None:
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        hyperparameters=AUGMENTED,
        compute=smi.Compute(image_uri=TRAIN_IMAGE),
    )
    run = smi.TuningRun(
        est,
        {"lr": smi.Continuous(1e-4, 1e-1)},
        max_jobs=4,
        max_parallel_jobs=2,
        max_cost=0.02,
        in_one_job=False,
    )
    with pytest.raises(smi.ConfigurationError, match="two minutes"):
        run.dry_run(CHANNELS)


# Expected time from measured speed ---------------------------------------------------------

EPOCHS = [
    "job: resnet18 on cpu",
    "epoch=1 train:loss=1.0 valid:accuracy=0.5 epoch_seconds=10.000 train_images=1000",
    "epoch=2 train:loss=0.9 epoch_seconds=8.000 train_images=1000",
    "epoch=3 train:loss=0.8 epoch_seconds=0.000 train_images=1000",  # never divides by 0
    "epoch=4 train:loss=0.7 epoch_seconds=12.5 train_images=1000",
    "epoch=5 cut short by a kill",
    "best_epoch=2 valid.accuracy=0.5000",
]


def test_speed_is_the_median_epoch_of_a_log() -> None:
    from sm_imgclf.contracts.speeds import speed_from_log

    assert speed_from_log(EPOCHS) == pytest.approx(100.0)  # 100, 125 and 80 images/s
    assert speed_from_log(["epoch=1 train:loss=1.0"]) is None  # an older job's log


def test_a_measured_speed_gives_an_expected_time_and_cost(
    sm_session: smi.SageMakerSession, tmp_path: Path
) -> None:
    from sm_imgclf.backends import speeds

    smi.digits_to_folder(tmp_path / "images", limit_per_class=6)
    channels = (
        smi.ImageFolderDataset(tmp_path / "images")
        .split(valid=0.25, seed=0)
        .upload(sm_session, "digits-speed", progress=False)
    )
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        hyperparameters={**AUGMENTED, "epochs": 30},
        compute=smi.Compute(image_uri=TRAIN_IMAGE, max_run=7200),
    )
    assert est.estimate(channels).expected_hours is None  # nothing measured yet: no guess
    assert speeds.record("sagemaker", est.plan(channels), EPOCHS, "dogs-1") is not None
    estimate = est.estimate(channels)
    images = len(
        json.loads(sm_session.store.get_bytes("digits-speed/train/manifest.json"))["entries"]
    )
    assert 20 <= images <= 45  # 60 digits less those kept for validation and test
    assert estimate.expected_hours == pytest.approx(30 * images / 100.0 / 3600)
    text = str(estimate)
    assert f"30 epochs x {images} images at 100.0 images/s, measured by job dogs-1" in text
    assert f"expected about {30 * images / 100 / 60:.1f} min ($0.0" in text
    assert "for at most 2.00 h" in text
    run = smi.TuningRun(
        est, {"lr": smi.Continuous(1e-4, 1e-1, scale="log")}, max_jobs=6, in_one_job=False
    )
    assert run.estimate(channels).expected_hours == pytest.approx(6 * estimate.expected_hours)  # type: ignore[operator]
    assert "6 trials x (30 epochs" in str(run.estimate(channels))
    other = smi.TransferLearningEstimator(
        "resnet18",
        session=sm_session,
        compute=smi.Compute(image_uri=TRAIN_IMAGE, instance_type="ml.g5.xlarge"),
    )
    assert other.estimate(channels).expected_hours is None  # another instance type
    assert est.estimate(CHANNELS).expected_hours is None  # data without a manifest


@pytest.mark.slow
def test_a_completed_local_job_teaches_later_estimates(tmp_path: Path) -> None:
    smi.digits_to_folder(tmp_path / "images", limit_per_class=10)
    session = smi.LocalSession(tmp_path / "session")
    channels = (
        smi.ImageFolderDataset(tmp_path / "images")
        .split(valid=0.2, seed=0)
        .upload(session, "digits", progress=False)
    )
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        hyperparameters={"image_size": 16, "epochs": 2, "batch_size": 32, "record_every": 0},
    )
    assert est.estimate(channels).expected_hours is None
    job = est.fit(channels, logs=False)
    later = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        hyperparameters={"image_size": 16, "epochs": 20, "lr": 0.1},
    )
    text = str(later.estimate(channels))
    assert "20 epochs x " in text and " images at " in text
    assert f"measured by job {job.name}" in text
    assert "expected about" in text
    bigger = smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, hyperparameters={"image_size": 32}
    )
    assert bigger.estimate(channels).expected_hours is None


def test_the_budget_line_is_part_of_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    fake = smi.FakeBackend()
    fake.prices["ml.g4dn.xlarge"] = 2.0
    est = smi.TransferLearningEstimator("resnet18", session=smi.Session(fake), max_cost=3.0)
    est.fit({"train": "memory://fake/train"}, wait=False, logs=False, name="quiet")
    assert "budget:" not in capsys.readouterr().out
    est.fit({"train": "memory://fake/train"}, wait=False, name="told")
    assert "budget: " in capsys.readouterr().out


def test_an_endpoint_whose_config_is_gone_is_still_found_and_removed(
    sm_session: smi.SageMakerSession, boto_session, moto_url: str
) -> None:  # type: ignore[no-untyped-def]
    client = boto_session.client("sagemaker", endpoint_url=moto_url)
    orphan = f"orphan-{uuid.uuid4().hex[:8]}"
    sm_session.backend.deploy(DeploySpec(orphan, MODEL, image_uri=IMAGE, role=ROLE), poll=0)  # type: ignore[call-arg]
    client.delete_endpoint_config(EndpointConfigName=orphan)  # as a rollback once did
    found = {r.name: r for r in sm_session.resources()}
    assert orphan in found and found[orphan].instance_type is None  # it bills all the same
    assert [r.name for r in sm_session.cleanup([orphan])] == [orphan]
    assert orphan not in {e["EndpointName"] for e in client.list_endpoints()["Endpoints"]}
    client.delete_model(ModelName=orphan)  # which models it served went with its config
