"""The model registry over torchvision: names, heads, freezing, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import sm_imgclf as smi
from sm_imgclf.runtime.models import build_model, list_models, rebuild_model, set_trainable


def test_lists_torchvision_classifiers() -> None:
    names = list_models()
    assert {
        "resnet50",
        "efficientnet_b0",
        "mobilenet_v3_large",
        "convnext_tiny",
        "vit_b_16",
        "regnet_y_400mf",
    } <= set(names)


def test_unknown_model_suggests_close_matches() -> None:
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'resnet50'"):
        smi.TransferLearningEstimator("resnet05", session=smi.Session(smi.FakeBackend()))


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("resnet18", "fc"),
        ("mobilenet_v3_small", "classifier.3"),
        ("squeezenet1_1", "classifier.1"),
        ("efficientnet_b0", "classifier.1"),
        ("densenet121", "classifier"),
        ("vit_b_32", "heads.head"),
    ],
)
def test_head_is_replaced_whatever_the_family(name: str, path: str) -> None:
    model, head = build_model(name, 5)
    assert head.path == path and head.num_classes == 5
    model.eval()
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 5)


def test_hidden_layer_dropout_and_rebuild() -> None:
    model, head = build_model("resnet18", 4, hidden=32, dropout=0.3)
    assert [type(m).__name__ for m in model.fc] == ["Linear", "ReLU", "Dropout", "Linear"]
    again = rebuild_model("resnet18", head)
    again.load_state_dict(model.state_dict())  # same shapes, strict


def test_trainable_head_all_and_blocks() -> None:
    model, head = build_model("resnet18", 3)
    assert set_trainable(model, head, "head") == ["fc.weight", "fc.bias"]
    blocks = set_trainable(model, head, ["layer4"])
    assert all(n.startswith(("layer4.", "fc.")) for n in blocks) and len(blocks) > 2
    assert not model.conv1.weight.requires_grad
    assert len(set_trainable(model, head, "all")) == len(list(model.parameters()))
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'layer4'"):
        set_trainable(model, head, ["layer5"])


def test_weights_from_a_local_file(tmp_path: Path) -> None:
    reference, _ = build_model("resnet18", 10)
    imagenet = torch.nn.Linear(512, 1000)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    state |= {"fc.weight": imagenet.weight.detach(), "fc.bias": imagenet.bias.detach()}
    torch.save(state, tmp_path / "resnet18.pth")
    model, _ = build_model("resnet18", 10, weights=str(tmp_path / "resnet18.pth"))
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_unreachable_weights_say_how_to_supply_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(smi.ConfigurationError, match="Cannot download") as caught:
        build_model("resnet18", 3, weights="DEFAULT")
    message = str(caught.value)
    assert "weights='/path/to/resnet18-" in message and str(tmp_path) in message


def test_unknown_weights_name() -> None:
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'IMAGENET1K_V1'"):
        build_model("resnet18", 3, weights="IMAGENET1K_V3")
