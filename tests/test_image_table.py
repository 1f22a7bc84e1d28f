"""The container-image table against the dated extract of AWS's container repository."""

from __future__ import annotations

import datetime
import json
import warnings
from pathlib import Path

import pytest

import sm_imgclf as smi
from sm_imgclf.backends.sagemaker import images
from sm_imgclf.backends.sagemaker.images import (
    REGISTRIES,
    SERVING,
    TRAINING,
    UnpatchedImageWarning,
    current_line,
    processor,
    pytorch_image,
)

EXTRACT = json.loads((Path(__file__).parent / "data" / "dlc_images.json").read_text())
TODAY = datetime.date(2026, 12, 7)
PROCESSORS = {"cpu": "ml.m5.xlarge", "gpu": "ml.g5.xlarge"}


def extracted(repository: str, version: str, accelerator: str) -> dict | None:
    return next(
        (
            i
            for i in EXTRACT["images"]
            if (i["repository"], i["version"], i["accelerator"])
            == (repository, version, accelerator)
        ),
        None,
    )


def test_the_table_names_the_extract_it_was_read_from() -> None:
    assert EXTRACT["commit"] == images.TABLE_COMMIT and EXTRACT["date"] == images.TABLE_DATE
    assert EXTRACT["accounts"] == REGISTRIES


@pytest.mark.parametrize("line", [*TRAINING, *SERVING], ids=lambda line: line.name)
def test_every_line_is_aws_own_or_long_ended(line: images.ImageLine) -> None:
    for accelerator in ("cpu", "gpu"):
        found = extracted(line.repository, line.version, accelerator)
        if found is None:  # gone from AWS's data: only lines that ended before it
            assert line.eop is not None and line.eop < EXTRACT["date"]
            continue
        assert (line.cpu if accelerator == "cpu" else line.gpu) in found["tags"]
        assert found["python"] == line.python and found.get("eop") == line.eop
        assert found["platform"] == "sagemaker"
        if "ga" in found:
            assert found["ga"] == line.ga


@pytest.mark.parametrize("region", sorted(EXTRACT["accounts"]))
def test_every_region_and_processor_gets_the_current_lines(region: str) -> None:
    for scope, repository in (("training", "pytorch"), ("inference", "ray")):
        line = current_line(scope, TODAY)
        assert line.repository == repository
        for accelerator, instance in PROCESSORS.items():
            uri = pytorch_image(
                None, scope=scope, region=region, instance_type=instance, today=TODAY
            )
            registry, _, image = uri.partition("/")
            domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
            assert registry == f"{EXTRACT['accounts'][region]}.dkr.ecr.{region}.{domain}"
            name, _, tag = image.partition(":")
            found = extracted(name, line.version, accelerator)
            assert found is not None and tag in found["tags"]


def test_us_east_1_gets_pytorch_2_13_for_training_and_ray_serve_for_serving() -> None:
    def uri(scope: str, instance: str | None) -> str:
        return pytorch_image(None, scope=scope, region="us-east-1", instance_type=instance)

    base = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
    assert uri("training", "ml.g4dn.xlarge") == f"{base}/pytorch:2.13-cu133-amzn2023-sagemaker"
    assert uri("training", "ml.m5.xlarge") == f"{base}/pytorch:2.13-cpu-amzn2023-sagemaker"
    assert uri("inference", "ml.g5.xlarge") == f"{base}/ray:serve-ml-sagemaker-cuda-v1"
    assert uri("inference", None) == f"{base}/ray:serve-ml-sagemaker-cpu-v1"


def test_a_line_pinned_past_its_end_of_patch_warns_with_the_date() -> None:
    with pytest.warns(UnpatchedImageWarning, match=r"pytorch-training:2\.5 .*2025-10-29"):
        uri = pytorch_image(
            "pytorch-training:2.5", scope="training", region="eu-west-1", instance_type=None
        )
    assert uri.endswith("/pytorch-training:2.5.1-cpu-py311")
    with pytest.warns(UnpatchedImageWarning, match="2026-06-30.*ray:2.57 is the current line"):
        pytorch_image(
            "pytorch-inference:2.6", scope="inference", region="eu-west-1", instance_type=None
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current lines say nothing
        pytorch_image(None, scope="training", region="eu-west-1", instance_type=None)
        pytorch_image("ray:2.57", scope="inference", region="eu-west-1", instance_type=None)


def test_when_every_line_has_ended_the_newest_is_used_with_a_warning() -> None:
    later = datetime.date(2028, 1, 1)
    assert current_line("training", later) is TRAINING[0]
    with pytest.warns(UnpatchedImageWarning, match="2027-07-20"):
        pytorch_image(None, scope="training", region="us-east-1", instance_type=None, today=later)


@pytest.mark.parametrize(
    "instance",
    ["ml.c7g.xlarge", "ml.m6gd.large", "ml.g5g.xlarge", "ml.c6gn.2xlarge", "ml.t4g.large"],
)
def test_graviton_instances_are_refused_with_an_x86_alternative(instance: str) -> None:
    with pytest.raises(smi.ConfigurationError, match="x86") as caught:
        processor(instance)
    assert "ml.c7i" in str(caught.value) and instance in str(caught.value)


@pytest.mark.parametrize(
    ("instance", "expected"),
    [("ml.g4dn.xlarge", "gpu"), ("ml.g5.xlarge", "gpu"), ("ml.p4d.24xlarge", "gpu"),
     ("ml.c7i.large", "cpu"), ("ml.m5.xlarge", "cpu"), (None, "cpu")],
)  # fmt: skip
def test_x86_families_keep_their_processor(instance: str | None, expected: str) -> None:
    assert processor(instance) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"region": "us-gov-west-1"}, "region must be a region with AWS's Deep Learning"),
        ({"given": "pytorch-training:1.0"}, "training image line must be one of"),
        ({"instance_type": "ml.trn1.2xlarge"}, "Neuron"),
    ],
)
def test_lookup_errors_say_what_to_pass(options: dict, message: str) -> None:
    arguments = {"given": None, "scope": "training", "region": "us-east-1"}
    arguments |= {"instance_type": "ml.g5.xlarge", **options}
    with pytest.raises(smi.ConfigurationError, match=message) as caught:
        pytorch_image(arguments.pop("given"), **arguments)
    assert "image_uri=" in str(caught.value) or "image URI" in str(caught.value)


def test_a_full_image_uri_is_used_as_given() -> None:
    mine = "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com/mine:1.0"
    assert pytorch_image(mine, scope="training", region="us-gov-west-1", instance_type=None) == mine
