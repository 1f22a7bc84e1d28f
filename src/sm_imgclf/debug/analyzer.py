"""DebugProfileAnalyzer: the checks and the profiler's findings for one training job."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from sm_imgclf.debug import plots
from sm_imgclf.debug.insights import Insight, insights
from sm_imgclf.errors import BackendError, DebugDataNotFoundError
from sm_imgclf.runtime.checks.records import RECORDS, Records, read_records
from sm_imgclf.runtime.checks.rules import RuleResult, evaluate
from sm_imgclf.training.job import TrainingJob


class DebugProfileAnalyzer:
    """Reads what a job recorded and judges it; works on finished and running jobs.

    Building one only stores ``source``: the data is fetched and read when first
    needed. :meth:`from_job` and :meth:`from_path` read it at once, so a job
    without data fails there. Use it as a context manager (or call
    :meth:`close`) to remove what was downloaded for it.

    Args:
        source: A :class:`~sm_imgclf.TrainingJob` (local, or SageMaker: its
            ``output.tar.gz`` is streamed from S3 to a temporary folder), a
            folder (a downloaded job output, its ``data`` folder, or the
            ``debug`` folder itself), or the path of an ``output.tar.gz``.

    Example:
        ``with DebugProfileAnalyzer.from_job(job) as analyzer: analyzer.report("checks.html")``
    """

    def __init__(self, source: TrainingJob | str | Path) -> None:
        self.source = source
        self.name = source.name if isinstance(source, TrainingJob) else _display_name(Path(source))
        self._temp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def from_job(cls, job: TrainingJob) -> DebugProfileAnalyzer:
        """Fetch and read what ``job`` recorded.

        Raises:
            DebugDataNotFoundError: The job has no output yet, or recorded nothing
                (run with ``record_every=0``, or from before the library recorded data).
        """
        return cls(job).load()

    @classmethod
    def from_path(cls, path: str | Path) -> DebugProfileAnalyzer:
        """Read a downloaded job output, its ``debug`` folder, or an ``output.tar.gz``.

        Raises:
            DebugDataNotFoundError: Nothing was recorded there.
        """
        return cls(Path(path)).load()

    def __repr__(self) -> str:
        where = f"folder={str(self.folder)!r}" if "_loaded" in self.__dict__ else "not read yet"
        return f"DebugProfileAnalyzer({self.name!r}, {where})"

    def __enter__(self) -> DebugProfileAnalyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove what was downloaded or extracted for this analyzer (what was read stays)."""
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def load(self) -> DebugProfileAnalyzer:
        """Fetch and read the data now, rather than on first use; return ``self``.

        Raises:
            DebugDataNotFoundError: Nothing was recorded there.
        """
        self._loaded  # noqa: B018  (reading it loads)
        return self

    @cached_property
    def _loaded(self) -> tuple[Path, Records]:
        source = self.source
        folder = (
            self._from_job(source)
            if isinstance(source, TrainingJob)
            else self._locate(Path(source))
        )
        return folder, read_records(folder)

    @property
    def folder(self) -> Path:
        """The folder the records were read from."""
        return self._loaded[0]

    @property
    def records(self) -> Records:
        """Everything the job recorded, read on first use."""
        return self._loaded[1]

    def _locate(self, path: Path) -> Path:
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            return self._extract(path)
        for folder in (
            path,
            path / "debug",
            path / "data" / "debug",
            path / "output" / "data" / "debug",
        ):
            if (folder / RECORDS).is_file():
                return folder
        raise DebugDataNotFoundError(
            f"No recorded checks data under {path}: expected {RECORDS} in it or in its "
            "debug/, data/debug/ or output/data/debug/ folder. Jobs record it unless run "
            "with record_every=0."
        )

    def _temporary(self) -> Path:
        if self._temp is None:
            self._temp = tempfile.TemporaryDirectory(prefix="sm-imgclf-debug-")
        return Path(self._temp.name)

    def _from_job(self, job: TrainingJob) -> Path:
        try:
            output = job.session.backend.training_output(job.name, self._temporary())
        except BackendError as error:
            raise DebugDataNotFoundError(str(error)) from error
        return self._locate(output)

    def _extract(self, archive: Path) -> Path:
        from sm_imgclf._archive import safe_extract

        return self._locate(safe_extract(archive, self._temporary() / "output"))

    def rules(self, **overrides: Mapping[str, float]) -> list[RuleResult]:
        """Run every rule on the recorded data, with parameters changed by ``overrides``.

        Example: ``analyzer.rules(overfit={"patience": 3})``.

        Raises:
            ConfigurationError: An unknown rule or parameter, or a value out of range.
        """
        return evaluate(self.records, overrides)

    def insights(self) -> list[Insight]:
        """The profiler's findings: data loading, GPU use, memory, outlier steps."""
        return insights(self.records)

    def metrics(self) -> dict[str, Any]:
        """The recorded series: per-step loss and gradient norms, epochs, system, step times."""
        steps = self.records.steps
        groups = list(dict.fromkeys(g for s in steps for g in s.get("grad_norm", {})))
        return {
            "loss": [(s["step"], s["loss"]) for s in steps],
            "grad_norm": {
                g: [(s["step"], s["grad_norm"][g]) for s in steps if g in s.get("grad_norm", {})]
                for g in groups
            },
            "epochs": [{k: v for k, v in e.items() if k != "type"} for e in self.records.epochs],
            "system": list(self.records.system),
            "step_split": [
                {k: v for k, v in r.items() if k != "type"} for r in self.records.splits
            ],
            "step_seconds": [s for r in self.records.durations for s in r["seconds"]],
            "operators": list(self.records.operators),
            "live_triggers": list(self.records.rules),
        }

    def plot_losses(self, path: str | Path | None = None) -> Any:
        """Train versus valid loss; returns the matplotlib figure (saved to ``path``)."""
        return plots.losses(self.records, path)

    def plot_gradients(self, path: str | Path | None = None) -> Any:
        """Gradient norms per layer group over time."""
        return plots.gradients(self.records, path)

    def plot_system(self, path: str | Path | None = None) -> Any:
        """CPU, memory and GPU utilisation over time."""
        return plots.system(self.records, path)

    def plot_step_times(self, path: str | Path | None = None) -> Any:
        """Step time split into data, forward, backward and optimizer."""
        return plots.step_times(self.records, path)

    def summary(self, **overrides: Mapping[str, float]) -> str:
        """The report's content as text: the verdict, each rule, each insight."""
        from sm_imgclf.debug.report import text_summary

        return text_summary(self.name, self.records, self.rules(**overrides), self.insights())

    def report(self, path: str | Path, **overrides: Mapping[str, float]) -> Path:
        """Write one self-contained HTML file: summary, rules, charts, profiler sections.

        Returns:
            The path written.
        """
        from sm_imgclf.debug.report import write_report

        return write_report(
            self.name, self.records, Path(path), self.rules(**overrides), self.insights()
        )


def _display_name(path: Path) -> str:
    """The job folder's name rather than ``output`` or ``debug``."""
    for part in (path.absolute(), *path.absolute().parents):
        if part.name not in ("output", "data", "debug", "output.tar.gz"):
            return part.name or str(path)
    return str(path)
