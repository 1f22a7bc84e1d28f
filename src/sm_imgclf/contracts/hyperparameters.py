"""The hyperparameters of a training job, declared once and typed end to end."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from sm_imgclf.contracts.schema import Param, check_all, check_names

RULE_NAMES = (
    "vanishing_gradient",
    "exploding_tensor",
    "loss_not_decreasing",
    "overfit",
    "overtraining",
    "poor_weight_initialization",
    "class_imbalance",
    "dead_relu",
)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine")
AUGMENTATIONS = ("none", "light", "strong")
CLASS_WEIGHTING = ("none", "balanced")

PARAMS: tuple[Param, ...] = (
    Param("lr", float, 1e-3, 0.0, 10.0, low_open=True, help="learning rate"),
    Param(
        "batch_size",
        int,
        32,
        1,
        8192,
        help="images per step of each training process "
        "(one per host on CPU, one per GPU under torchrun)",
    ),
    Param("epochs", int, 10, 1, 10_000, help="passes over the training split"),
    Param("optimizer", str, "adamw", choices=OPTIMIZERS, help="sgd, adam or adamw"),
    Param("momentum", float, 0.9, 0.0, 1.0, high_open=True, help="SGD momentum"),
    Param("weight_decay", float, 1e-4, 0.0, 1.0, help="L2 penalty (decoupled for adamw)"),
    Param("eps", float, 1e-8, 0.0, 1.0, low_open=True, help="Adam epsilon"),
    Param("lr_schedule", str, "cosine", choices=SCHEDULES, help="none, step or cosine"),
    Param("lr_step_epochs", int, 5, 1, 10_000, help="epochs between decays (step)"),
    Param("lr_gamma", float, 0.1, 0.0, 1.0, low_open=True, help="decay factor (step)"),
    Param("warmup_epochs", int, 0, 0, 10_000, help="epochs of linear warm-up"),
    Param("label_smoothing", float, 0.0, 0.0, 1.0, high_open=True, help="cross-entropy smoothing"),
    Param("image_size", int, 224, 16, 1024, help="side of the square network input"),
    Param(
        "augmentation",
        str,
        "light",
        choices=AUGMENTATIONS,
        help="none, light (crop and flip) or strong (resized crop, flip, colour)",
    ),
    Param(
        "class_weighting",
        str,
        "none",
        choices=CLASS_WEIGHTING,
        help="none, or balanced (loss weights inverse to class frequency)",
    ),
    Param(
        "early_stopping_patience",
        int,
        0,
        0,
        10_000,
        help="epochs without valid improvement before stopping (0: never)",
    ),
    Param(
        "head_epochs",
        int,
        30,
        0,
        10_000,
        help="fine-tuning from pretrained weights: epochs of the head alone on cached "
        "features before the rest trains (0: none)",
    ),
    Param(
        "head_lr",
        float,
        1e-2,
        0.0,
        10.0,
        low_open=True,
        help="fine-tuning from pretrained weights: the learning rate of the head's "
        "epochs alone (a linear probe's)",
    ),
    Param(
        "backbone_lr_ratio",
        float,
        0.3,
        0.0,
        1.0,
        low_open=True,
        help="fine-tuning from pretrained weights: the backbone's learning rate as a "
        "fraction of lr (the head's)",
    ),
    Param("head_hidden", int, 0, 0, 65_536, help="units of a hidden head layer (0: none)"),
    Param("head_dropout", float, 0.0, 0.0, 1.0, high_open=True, help="dropout before the head"),
    Param("seed", int, 0, 0, 2**31 - 1, help="seed of every random choice"),
    Param("num_workers", int, 0, 0, 256, help="threads decoding images (0: one per CPU)"),
    Param(
        "record_every",
        int,
        25,
        0,
        1_000_000,
        help="steps between records for the checks and profiler (0: record nothing)",
    ),
    Param(
        "stop_on",
        str,
        "none",
        choices=("none", "any", *RULE_NAMES),
        help="end training when this rule (or any) triggers",
    ),
    Param(
        "profile_interval", float, 1.0, 0.05, 3600.0, help="seconds between system metric samples"
    ),
)
BY_NAME = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Hyperparameters:
    """Training hyperparameters; every field is checked on creation.

    Build one with ``Hyperparameters(lr=0.01)`` or
    :meth:`Hyperparameters.from_dict`. Strings from argv or SageMaker come back
    typed with :meth:`from_strings`.
    """

    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    eps: float = 1e-8
    lr_schedule: str = "cosine"
    lr_step_epochs: int = 5
    lr_gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    image_size: int = 224
    augmentation: str = "light"
    class_weighting: str = "none"
    early_stopping_patience: int = 0
    head_epochs: int = 30
    head_lr: float = 1e-2
    backbone_lr_ratio: float = 0.3
    head_hidden: int = 0
    head_dropout: float = 0.0
    seed: int = 0
    num_workers: int = 0
    record_every: int = 25
    stop_on: str = "none"
    profile_interval: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = BY_NAME[field.name].check(getattr(self, field.name))
            object.__setattr__(self, field.name, value)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None = None) -> Hyperparameters:
        """Build from a mapping of typed values; unknown names are refused."""
        return cls(**check_all(PARAMS, dict(values or {})))

    @classmethod
    def from_strings(cls, values: Mapping[str, str]) -> Hyperparameters:
        """Parse values written by :meth:`to_strings` (or by SageMaker)."""
        check_names(PARAMS, values)
        return cls(**{name: BY_NAME[name].parse(text) for name, text in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Return the typed values."""
        return asdict(self)

    def to_strings(self) -> dict[str, str]:
        """Return every value as a string, as SageMaker's hyperparameter map holds them."""
        return {name: BY_NAME[name].format(value) for name, value in self.to_dict().items()}

    def updated(self, **changes: Any) -> Hyperparameters:
        """Return a copy with ``changes`` applied and checked."""
        return replace(self, **check_all(PARAMS, changes))
