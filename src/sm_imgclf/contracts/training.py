"""The frozen plan of a training job: what to run, on what, with which data."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from sm_imgclf._params import bad_value, check_number, check_resource_name
from sm_imgclf.contracts.hyperparameters import Hyperparameters


@dataclass(frozen=True, kw_only=True)
class Compute:
    """What a SageMaker training job runs on; the local backend uses this machine instead.

    One value for the settings only SageMaker has, the way httpx groups its
    timeouts: pass it as ``TransferLearningEstimator(compute=...)``. Local jobs
    use only ``max_run``: every job stops in time to package its best epoch.

    Attributes:
        instance_type: SageMaker instance type.
        instance_count: Hosts; more than one trains data-parallel.
        volume_size_gb: Disk per host.
        use_spot: Use managed spot capacity (checkpoints make interruptions harmless).
        max_run: Maximum training seconds.
        max_spot_wait: Maximum seconds including waiting for spot capacity;
            with spot, ``2 * max_run`` when not given.
        image_uri: Training container image: a full URI, a line of AWS's images
            by name (``"pytorch-training:2.5"``, which warns once it is past its
            end of patch), or ``None`` for the newest patched ``pytorch`` line.
    """

    instance_type: str = "ml.g4dn.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    use_spot: bool = False
    max_run: int = 86_400
    max_spot_wait: int | None = None
    image_uri: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.instance_type, str) or not self.instance_type.startswith(
            ("ml.", "local")
        ):
            raise bad_value(
                "instance_type",
                "a SageMaker instance type such as 'ml.g4dn.xlarge'",
                self.instance_type,
            )
        check_number("instance_count", self.instance_count, low=1, high=100, integer=True)
        check_number("volume_size_gb", self.volume_size_gb, low=1, integer=True)
        # SageMaker runs no training job longer than 28 days.
        check_number("max_run", self.max_run, low=1, high=28 * 24 * 3600, integer=True)
        if self.max_spot_wait is not None and not self.use_spot:
            raise bad_value(
                "max_spot_wait",
                "None unless use_spot=True",
                self.max_spot_wait,
                "It bounds the wait for spot capacity; SageMaker refuses it otherwise.",
            )
        if self.use_spot and self.max_spot_wait is None:
            object.__setattr__(self, "max_spot_wait", 2 * self.max_run)
        if self.max_spot_wait is not None:
            check_number("max_spot_wait", self.max_spot_wait, low=self.max_run, integer=True)

    def settings(self) -> dict[str, Any]:
        """The fields by name, for a spec."""
        return {f.name: getattr(self, f.name) for f in fields(Compute)}


@dataclass(frozen=True)
class TrainingSpec(Compute):
    """Everything a backend needs to run one training job; built without any I/O.

    Its :class:`Compute` fields (``instance_type`` to ``image_uri``) are keywords.

    Attributes:
        job_name: Unique name of the job.
        model: The architecture (see :mod:`sm_imgclf.runtime.sources`).
        weights: ``"none"``, ``"DEFAULT"``, a weights enum name, a local file,
            an ``s3://`` URI or ``package:module/path``.
        trainable: ``("head",)``, ``("all",)`` or block names.
        hyperparameters: Typed hyperparameters.
        channels: Channel name to URI (``file://`` or ``s3://``).
        role: IAM role ARN for SageMaker.
        tags: Tags for the job.
        source_dir: A local folder shipped with the job: importable inside it,
            its ``requirements.txt`` installed on SageMaker.
        search: A head-only search the job runs in-process (JSON, see
            :mod:`sm_imgclf.contracts.search`); empty for an ordinary job.
        max_cost: US dollars the job may cost at most; on SageMaker it lowers
            ``max_run`` to what that buys at the instance's on-demand price.
        features_only: Compute the backbone's features, store them for the
            trials of a tuning run, and train nothing (see
            :attr:`TuningSpec.shared_features <sm_imgclf.contracts.tuning.TuningSpec>`).
        environment: Variables set in the job's environment (MLflow tracking's).
    """

    job_name: str
    model: str
    weights: str
    trainable: tuple[str, ...]
    hyperparameters: Hyperparameters
    channels: tuple[tuple[str, str], ...]
    role: str | None = None
    tags: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    source_dir: str | None = None
    search: str = ""
    max_cost: float | None = None
    features_only: bool = False
    environment: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_resource_name("job_name", self.job_name)
        if self.max_cost is not None:
            check_number("max_cost", self.max_cost, low=0.0, low_open=True)
        super().__post_init__()
        if "train" not in dict(self.channels):
            raise bad_value(
                "channels", "a mapping with at least a 'train' channel URI", dict(self.channels)
            )

    @property
    def channel_map(self) -> dict[str, str]:
        """The channels as a dictionary."""
        return dict(self.channels)

    def job_arguments(self) -> dict[str, str]:
        """Every job argument as a string: the SageMaker hyperparameter map."""
        search = {"search": self.search} if self.search else {}
        if self.features_only:
            search["features_only"] = "true"
        return {
            "max_run": str(self.max_run),
            "model": self.model,
            "weights": self.weights,
            "trainable": ",".join(self.trainable),
            **search,
            **self.hyperparameters.to_strings(),
        }

    def argv(self) -> list[str]:
        """The job's command-line arguments, ``--name value`` pairs with sorted names."""
        args = self.job_arguments()
        return [part for name in sorted(args) for part in (f"--{name}", args[name])]


def new_job_name(base: str) -> str:
    """Return ``<base>-<timestamp>-<random>``, within SageMaker's 63 characters."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = re.sub(r"[^a-zA-Z0-9-]", "-", base).strip("-")[:35] or "job"
    return f"{base}-{stamp}-{uuid.uuid4().hex[:4]}"


def spec_to_dict(spec: TrainingSpec) -> dict[str, Any]:
    """A JSON-friendly copy of ``spec`` (hyperparameters as their strings)."""
    data = {f.name: getattr(spec, f.name) for f in fields(spec)}
    data["hyperparameters"] = spec.hyperparameters.to_strings()
    return data


def spec_from_dict(data: dict[str, Any]) -> TrainingSpec:
    """Rebuild a spec written by :func:`spec_to_dict`."""
    values = dict(data)
    values["hyperparameters"] = Hyperparameters.from_strings(values["hyperparameters"])
    for name in ("trainable",):
        values[name] = tuple(values[name])
    for name in ("channels", "tags", "environment"):
        values[name] = tuple(tuple(pair) for pair in values[name])
    return TrainingSpec(**values)
