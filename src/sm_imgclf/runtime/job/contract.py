"""The SageMaker training contract: where inputs, outputs and checkpoints live.

SageMaker sets ``SM_CHANNEL_<NAME>``, ``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``,
``SM_NUM_GPUS``, ``SM_HOSTS`` and ``SM_CURRENT_HOST``; the local backend sets
the same variables, so the job cannot tell them apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sm_imgclf.contracts.schema import Param
from sm_imgclf.errors import ConfigurationError

DEFAULT_CHECKPOINTS = "/opt/ml/checkpoints"

JOB_PARAMS: tuple[Param, ...] = (
    Param("model", str, "resnet50", help="torchvision classifier name"),
    Param("weights", str, "none", help="'none', 'DEFAULT', a weights enum name, or a file"),
    Param("trainable", list, ("head",), help="'head', 'all', or block names"),
    Param("search", str, "", help="a head-only search to run in-process (JSON)"),
    Param(
        "features_only",
        bool,
        False,
        help="store the backbone features for later jobs and train nothing",
    ),
    Param(
        "max_run",
        int,
        0,
        low=0,
        help="seconds the job may run (0: no limit); it stops in time to package its best epoch",
    ),
)


@dataclass(frozen=True)
class JobEnvironment:
    """Paths and cluster layout read from the environment.

    ``checkpoints_shared`` is set for a trial of a tuning job: SageMaker gives all
    its trials one checkpoint prefix and copies all of it into each trial as it
    starts, so a trial that is done with its checkpoints deletes them.
    """

    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    num_gpus: int
    hosts: tuple[str, ...]
    current_host: str
    checkpoints_shared: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> JobEnvironment:
        """Read the contract from ``env`` (``os.environ`` by default)."""
        env = os.environ if env is None else env
        names = json.loads(env.get("SM_CHANNELS", "[]")) or [
            key[len("SM_CHANNEL_") :].lower() for key in env if key.startswith("SM_CHANNEL_")
        ]
        channels = {}
        for name in names:
            value = env.get(f"SM_CHANNEL_{name.upper()}")
            if value:
                channels[name] = Path(value)
        hosts = tuple(json.loads(env.get("SM_HOSTS", '["localhost"]')))
        return cls(
            channels=channels,
            model_dir=Path(env.get("SM_MODEL_DIR", "/opt/ml/model")),
            output_dir=Path(env.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
            checkpoint_dir=_checkpoint_dir(env),
            num_gpus=int(env.get("SM_NUM_GPUS", "0")),
            hosts=hosts,
            current_host=env.get("SM_CURRENT_HOST", hosts[0]),
            checkpoints_shared=_per_job(env),
        )

    def channel(self, name: str, *, required: bool) -> Path | None:
        """Return a channel's folder; a required one that is missing raises."""
        path = self.channels.get(name)
        if path is None:
            if required:
                raise ConfigurationError(
                    f"The {name!r} channel is missing: SM_CHANNEL_{name.upper()} is not set. "
                    f"Pass it to fit(), e.g. fit({{'{name}': uri, ...}}). "
                    f"Channels given: {sorted(self.channels) or 'none'}."
                )
            return None
        if not path.is_dir():
            raise ConfigurationError(f"The {name!r} channel folder {path} does not exist.")
        return path


def _per_job(env: Mapping[str, str]) -> bool:
    return env.get("SM_IMGCLF_CHECKPOINT_PER_JOB") == "1" and bool(env.get("TRAINING_JOB_NAME"))


def _checkpoint_dir(env: Mapping[str, str]) -> Path:
    folder = Path(env.get("SM_IMGCLF_CHECKPOINT_DIR", DEFAULT_CHECKPOINTS))
    if _per_job(env):
        # Trials of a tuning job share one checkpoint prefix; each keeps to its own folder.
        return folder / env["TRAINING_JOB_NAME"]
    return folder
