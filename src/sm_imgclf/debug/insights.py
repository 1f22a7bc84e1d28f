"""What the profiler's data says about where the time goes, as ProfilerReport told it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sm_imgclf.runtime.checks.records import Records


@dataclass(frozen=True)
class Insight:
    """One profiler finding.

    Attributes:
        name: ``data_bottleneck``, ``gpu_underused``, ``batch_size``, ``memory_headroom``
            or ``outlier_steps``.
        triggered: Whether it calls for action.
        message: What the data shows.
        suggestion: What to change when triggered.
    """

    name: str
    triggered: bool
    message: str
    suggestion: str = ""


def insights(records: Records) -> list[Insight]:
    """Every insight the recorded data supports (GPU ones only where a GPU was sampled)."""
    found = [_data_bottleneck(records), _memory(records), _outliers(records)]
    gpu = [row for row in records.system if "gpu_util" in row]
    if gpu:
        found += _gpu(gpu)
    elif any("gpu_memory" in row for row in records.system):
        memory = max(r["gpu_memory"] for r in records.system if "gpu_memory" in r)
        found.append(
            Insight(
                "gpu_underused",
                False,
                f"GPU memory peaked at {memory:.0f}%; how busy the GPU "
                "was is unknown: neither NVML nor nvidia-smi answered in the container, so "
                "torch's memory query was the only source.",
            )
        )
    return [i for i in found if i is not None]


def _data_bottleneck(records: Records) -> Insight | None:
    rows = records.splits
    if not rows:
        return None
    shares = [
        r["data"] / max(sum(r[k] for k in ("data", "forward", "backward", "optimizer")), 1e-12)
        for r in rows
    ]
    share = statistics.median(shares)
    return Insight(
        "data_bottleneck",
        share > 0.3,
        f"Preparing batches takes {share:.0%} of a step (median of {len(rows)} recorded steps).",
        "Images are decoded once before training, so this is augmentation "
        "and copies, which num_workers does not touch: use augmentation='none' "
        "or 'light', or a smaller image_size; on a GPU the job augments on the "
        "device, so a CPU-bound share there points at the host-to-GPU copy.",
    )


def _memory(records: Records) -> Insight | None:
    if not records.system:
        return None
    peak = max(r["memory"] for r in records.system)
    rss = max(r["rss_mb"] for r in records.system)
    return Insight(
        "memory_headroom",
        peak > 90,
        f"Host memory peaked at {peak:.0f}% in use; the job itself at {rss:,.0f} MiB.",
        "Lower batch_size or image_size, or use a larger "
        "instance: the job holds the decoded dataset in memory.",
    )


def _outliers(records: Records) -> Insight | None:
    seconds = [s for row in records.durations for s in row["seconds"][1:]]  # first: warm-up
    if len(seconds) < 10:
        return None
    median = statistics.median(seconds)
    slow = [s for s in seconds if s > 3 * median]
    return Insight(
        "outlier_steps",
        len(slow) > 0.02 * len(seconds),
        f"{len(slow)} of {len(seconds)} steps took over 3x the median "
        f"{median * 1000:.1f} ms (slowest {max(seconds) * 1000:.1f} ms).",
        "Look for other work on the machine, checkpoint writes, or uneven "
        "batches; the system timeline shows when they happened.",
    )


def _gpu(rows: list[dict[str, float]]) -> list[Insight]:
    use = statistics.mean(r["gpu_util"] for r in rows)
    memory = max(r["gpu_memory"] for r in rows)
    return [
        Insight(
            "gpu_underused",
            use < 70,
            f"The GPU was busy {use:.0f}% of the time on average.",
            "Feed it faster (see data_bottleneck) or use a smaller instance.",
        ),
        Insight(
            "batch_size",
            memory < 50 and use < 90,
            f"GPU memory peaked at {memory:.0f}%.",
            "A larger batch_size (with a proportionally larger lr) would use the GPU better.",
        ),
    ]
