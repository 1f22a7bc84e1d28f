"""A user's own backbone module, written into a ``source_dir`` as a user would write it."""

from __future__ import annotations

from pathlib import Path

MODULE = '''"""Tiny backbones of a user's team (nothing here comes with the library)."""

from torch import nn

import sm_imgclf


class Tiny(nn.Module):
    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(32, classes)

    def forward(self, x):
        return self.out(self.features(x))


@sm_imgclf.backbone(head="out", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
def tiny():
    """Declares its head and input statistics."""
    return Tiny()


def tiny_found():
    """Declares nothing: the head is the layer with 1,000 outputs."""
    return Tiny()


def tiny_ten():
    """Declares nothing and has no 1,000-output layer: its head cannot be found."""
    return Tiny(classes=10)


def not_a_model():
    return 42
'''


def write_source_dir(folder: Path, *, requirements: str = "") -> Path:
    """A ``source_dir`` holding the package ``teamnets`` (and a requirements file)."""
    package = folder / "teamnets"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(MODULE)
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    return folder
