"""What a SageMaker instance type has (vCPUs, GPUs, memory, disk), and serving settings for it.

AWS's PyTorch serving container starts TorchServe with one worker per vCPU by
default, and every worker's torch starts one compute thread per vCPU: on a
2-vCPU endpoint, two workers of two threads each fight over two cores
(measured on two cores: 4.7 requests/s at concurrency 8, against 34.8 with one
worker). The model's environment therefore sets the workers and their threads
so that workers x threads = vCPUs: one worker per GPU on GPU instances, and on
CPU instances one worker per four vCPUs (at least one). Table as of 2026-11.
"""

from __future__ import annotations

# vCPUs by size, shared by the general, compute and memory families.
_SIZES = {
    "medium": 2,
    "large": 2,
    "xlarge": 4,
    "2xlarge": 8,
    "4xlarge": 16,
    "8xlarge": 32,
    "9xlarge": 36,
    "12xlarge": 48,
    "16xlarge": 64,
    "18xlarge": 72,
    "24xlarge": 96,
    "32xlarge": 128,
    "48xlarge": 192,
}
_CPU_FAMILIES = frozenset(
    {
        "t2",
        "t3",
        "m4",
        "m5",
        "m5d",
        "m6i",
        "m7i",
        "c4",
        "c5",
        "c5d",
        "c6i",
        "c7i",
        "r5",
        "r5d",
        "r6i",
        "r7i",
    }
)
# GPUs by family and size; vCPUs follow _SIZES.
_GPUS = {
    "g4dn": {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 4, "16xlarge": 1},
    "g5": {
        "xlarge": 1,
        "2xlarge": 1,
        "4xlarge": 1,
        "8xlarge": 1,
        "12xlarge": 4,
        "16xlarge": 1,
        "24xlarge": 4,
        "48xlarge": 8,
    },
    "g6": {
        "xlarge": 1,
        "2xlarge": 1,
        "4xlarge": 1,
        "8xlarge": 1,
        "12xlarge": 4,
        "16xlarge": 1,
        "24xlarge": 4,
        "48xlarge": 8,
    },
    "p3": {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8},
    "p4d": {"24xlarge": 8},
}
THREADS_PER_CPU_WORKER = 4


def resources(instance_type: str) -> tuple[int, int] | None:
    """``(vCPUs, GPUs)`` of an instance type, or ``None`` when the table lacks it."""
    family, _, size = instance_type.removeprefix("ml.").partition(".")
    vcpus = _SIZES.get(size)
    if vcpus is None:
        return None
    if family in _GPUS:
        gpus = _GPUS[family].get(size)
        return None if gpus is None else (vcpus, gpus)
    return (vcpus, 0) if family in _CPU_FAMILIES else None


def serving_environment(instance_type: str | None) -> dict[str, str]:
    """TorchServe workers and each worker's threads for an instance type.

    Serverless endpoints (``None``) get one worker and their default threads;
    an instance type the table lacks gets nothing, leaving the container's defaults.
    """
    if instance_type is None:
        return {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    found = resources(instance_type)
    if found is None:
        return {}
    vcpus, gpus = found
    workers = gpus or max(1, vcpus // THREADS_PER_CPU_WORKER)
    return {
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "OMP_NUM_THREADS": str(max(1, vcpus // workers)),
    }


# Memory (GiB) per vCPU by family, for the families whose memory follows their size.
_GIB_PER_VCPU = {"m": 4.0, "t": 4.0, "c": 2.0, "r": 8.0}
# GPU instances: (memory GiB, local NVMe GB) by family and size. SageMaker puts a
# job's input and working files on the NVMe store where the type has one and
# ignores VolumeSizeInGB there; p3 has none (its EBS volume is all it has).
_G5_G6_SMALL = {
    "xlarge": (16, 250),
    "2xlarge": (32, 450),
    "4xlarge": (64, 600),
    "8xlarge": (128, 900),
}
_GPU_ROOM = {
    "g4dn": {
        "xlarge": (16, 125),
        "2xlarge": (32, 225),
        "4xlarge": (64, 225),
        "8xlarge": (128, 900),
        "12xlarge": (192, 900),
        "16xlarge": (256, 900),
    },
    "g5": {
        **_G5_G6_SMALL,
        "12xlarge": (192, 3800),
        "16xlarge": (256, 1900),
        "24xlarge": (384, 3800),
        "48xlarge": (768, 7600),
    },
    "g6": {
        **_G5_G6_SMALL,
        "12xlarge": (192, 3760),
        "16xlarge": (256, 1880),
        "24xlarge": (384, 3760),
        "48xlarge": (768, 7520),
    },
    "p3": {"2xlarge": (61, 0), "8xlarge": (244, 0), "16xlarge": (488, 0)},
    "p4d": {"24xlarge": (1152, 8000)},
}


def room(instance_type: str) -> tuple[float, int] | None:
    """``(memory GiB, local NVMe GB)`` of an instance type (0 GB: EBS only), or ``None``.

    CPU families with local NVMe (``m5d``, ``c5d``, ``r5d``) are counted by their
    EBS volume alone, which understates their disk.
    """
    family, _, size = instance_type.removeprefix("ml.").partition(".")
    if family in _GPU_ROOM:
        return _GPU_ROOM[family].get(size)
    found = resources(instance_type)
    if found is None:
        return None
    if family in ("t2", "t3") and size == "medium":
        return 4.0, 0
    per_vcpu = 1.875 if family == "c4" else _GIB_PER_VCPU[family[0]]
    return found[0] * per_vcpu, 0
