"""The sm-imgclf command and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sm_imgclf.cli import main
from sm_imgclf.demo import run_demo


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from sm_imgclf.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('torch', 'boto3', 'PIL', 'numpy') if m in sys.modules]\n"
        "print(heavy, 'upload' in out.getvalue())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[] True"


def test_validate_exit_codes_and_json(dataset_root: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(dataset_root)]) == 0
    capsys.readouterr()
    (dataset_root / "train/001.cat/zero.jpg").touch()
    assert main(["validate", str(dataset_root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["findings"][0]["code"] == "empty_file"


def test_missing_root_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_upload_local_json(dataset_root: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    args = ["upload", str(dataset_root), "pets", "--session-root", str(tmp_path / "s"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["uploaded"] == 24 and set(first["channels"]) == {"train", "valid", "test"}
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 24


def test_upload_sagemaker_needs_a_bucket(dataset_root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["upload", str(dataset_root), "pets", "--backend", "sagemaker"]) == 2
    assert "--bucket must be given" in capsys.readouterr().err


def test_demo(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", per_class=12, epochs=0, echo=False)
    assert result.report.ok
    assert set(result.channels) == {"train", "valid", "test"}
    assert result.channels.skipped == ["3/.DS_Store"]
    assert len(result.channels.summary.uploaded) == 120
    assert result.second_upload_bytes == 0
    assert (tmp_path / "demo" / "validation.json").is_file()
    assert result.job is None


def test_demo_tunes_checks_and_serves(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", per_class=30, epochs=2, trials=2, echo=False)
    assert result.tuning is not None and len(result.tuning.trials) == 2
    assert result.job is not None and result.job.status == "Completed"
    assert result.job.name == result.tuning.best.job_name
    assert len([m for m in result.job.metrics if m["epoch"]]) == 2
    assert result.checks is not None and result.checks.parent == tmp_path / "demo" / "report"
    assert "<h2 id=rules>" in result.checks.read_text()
    assert (tmp_path / "demo" / "report" / "tuning_trials.png").stat().st_size > 5000
    assert result.evaluation is not None
    assert result.evaluation.images == sum(result.report.counts["test"].values())
    assert all(Path(plot).is_file() for plot in result.evaluation.plots)
