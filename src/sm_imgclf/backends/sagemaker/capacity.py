"""Whether a job's decoded images fit its instance, checked before SageMaker creates it.

The job checks again on the instance with what it measures there; this check
only saves a job that would fail after SageMaker copied every image to it.
It reads each channel's ``manifest.json`` (what ``upload()`` wrote); a channel
without one is not checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sm_imgclf.backends.sagemaker.instances import room
from sm_imgclf.contracts.space import Categorical, Integer
from sm_imgclf.data.manifest import MANIFEST_NAME, DatasetManifest
from sm_imgclf.errors import DatasetError, StorageError
from sm_imgclf.runtime.job.data import held_side, split_sides
from sm_imgclf.runtime.job.room import RESERVE, Need, Room, gib, total_bytes
from sm_imgclf.storage.s3 import S3Store

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

    from sm_imgclf.contracts.training import TrainingSpec
    from sm_imgclf.contracts.tuning import TuningSpec

DATA_FOLDER = Path("/opt/ml/input/data")
EVALUATED = ("train", "valid", "test")


def check_fits(
    spec: TrainingSpec,
    read: Callable[[str], bytes | None],
    log: Callable[[str], None] = print,
    image_size: int | None = None,
) -> frozenset[str]:
    """Refuse a job whose decoded images fit neither its instance's memory nor its disk.

    A training channel stored as shards streams and needs no room; a sharded
    channel is read with FastFile, so nothing of it is copied to the disk.

    Args:
        spec: The job.
        read: Reads an ``s3://`` URI, ``None`` where it is absent or unreadable.
        log: Where the note that the images will be spilled to disk goes.
        image_size: The largest image size a tuning run may try (default: the spec's).

    Returns:
        The channels stored as shards, to be read with FastFile.

    Raises:
        DatasetError: They fit nowhere; the message has the numbers.
    """
    manifests = _manifests(spec, read)
    sharded = frozenset(name for name, manifest in manifests.items() if manifest.shards)
    found = room(spec.instance_type)
    if found is None or "train" not in manifests:  # the job checks on the instance
        return sharded
    memory_gib, nvme_gb = found
    hp = spec.hyperparameters
    sides = split_sides(manifests, image_size or hp.image_size, hp.augmentation)
    needs = [
        Need(name, len(manifest.entries), held_side(manifest.shorter_sides(), sides[name]))
        for name, manifest in manifests.items()
        if not (name == "train" and manifest.shards)
    ]
    copied = sum(e.bytes for m in manifests.values() if not m.shards for e in m.entries)
    disk = (nvme_gb or spec.volume_size_gb) * 10**9 - copied  # File mode copies every image
    memory = int(memory_gib * 2**30)
    place = Room(
        max(0, memory - RESERVE),
        f"{spec.instance_type} has {gib(memory)}",
        None,
        ((DATA_FOLDER, max(0, disk)),),
    ).place(needs)
    if place is not None:
        needed = gib(total_bytes(needs))
        log(
            f"memory: the decoded images ({needed}) exceed {spec.instance_type}'s memory, so "
            f"the job will map them to a file on its local disk (slower); an instance type "
            "with more memory keeps them in memory"
        )
    return sharded


def largest_image_size(spec: TuningSpec) -> int | None:
    """The largest ``image_size`` a tuning run's trials may take, ``None`` where it is fixed."""
    found = dict(spec.space).get("image_size")
    if isinstance(found, Integer):
        return found.max
    if isinstance(found, Categorical):
        return int(max(found.values))
    return None


def _manifests(
    spec: TrainingSpec, read: Callable[[str], bytes | None]
) -> dict[str, DatasetManifest]:
    found = {}
    for name, uri in spec.channels:
        if name not in EVALUATED or not uri.startswith("s3://"):
            continue
        data = read(f"{uri.rstrip('/')}/{MANIFEST_NAME}")
        if data is not None:
            try:
                found[name] = DatasetManifest.from_json(data)
            except DatasetError:
                continue  # not ours to judge here: the job says what is wrong with it
    return found


def reader(client: S3Client) -> Callable[[str], bytes | None]:
    """``read`` for :func:`check_fits` through an S3 client (any bucket it can read)."""

    def read(uri: str) -> bytes | None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            return S3Store(client, bucket).get_bytes(key)
        except StorageError:
            return None

    return read
