"""The sm-imgclf command and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sm_imgclf.cli.demo import run_demo
from sm_imgclf.cli.main import main


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from sm_imgclf.cli.main import main\n"
        "out = io.StringIO()\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):\n"
        "    main(['--help'])\n"
        "heavy = [m for m in ('torch', 'boto3', 'PIL', 'numpy') if m in sys.modules]\n"
        "print(heavy, 'upload' in out.getvalue())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] True"


def test_validate_exit_codes_and_json(
    dataset_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(dataset_root)]) == 0
    capsys.readouterr()
    (dataset_root / "train/001.cat/zero.jpg").touch()
    assert main(["validate", str(dataset_root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["findings"][0]["code"] == "empty_file"


def test_missing_root_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_upload_local_json(
    dataset_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["upload", str(dataset_root), "pets", "--session-root", str(tmp_path / "s"), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["uploaded"] == 24 and set(first["channels"]) == {"train", "valid", "test"}
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 24


def test_upload_sagemaker_needs_a_bucket(
    dataset_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["upload", str(dataset_root), "pets", "--backend", "sagemaker"]) == 2
    assert "--bucket must be given" in capsys.readouterr().err


@pytest.mark.slow
def test_demo(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", per_class=12, epochs=0, echo=False)
    assert result.report.ok
    assert set(result.channels) == {"train", "valid", "test"}
    assert result.channels.skipped == ["3/.DS_Store"]
    assert len(result.channels.summary.uploaded) == 120
    assert result.second_upload_bytes == 0
    assert (tmp_path / "demo" / "validation.json").is_file()
    assert result.job is None


@pytest.mark.slow
def test_demo_tunes_checks_and_serves(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path / "demo",
        per_class=30,
        epochs=2,
        trials=2,
        transfer_epochs=3,
        fine_tune_epochs=1,
        echo=False,
    )
    assert result.tuning is not None and len(result.tuning.trials) == 2
    assert result.transfer is not None and result.transfer.status == "Completed"
    assert any(line.startswith("features: backbone run once") for line in result.transfer.logs())
    assert result.fine_tuned is not None and result.fine_tuned.status == "Completed"
    assert any(line.startswith("fine-tuning: the head") for line in result.fine_tuned.logs())
    transfer, fine_tuned, scratch = result.comparison
    assert transfer.job is result.transfer and fine_tuned.job is result.fine_tuned
    assert scratch.job.name == result.tuning.best.job_name
    assert result.job is max(result.comparison, key=lambda row: row.test_accuracy).job
    assert result.job is not None and result.job.status == "Completed"
    assert len([m for m in result.job.metrics if m["epoch"]]) in {2, 3}
    assert result.checks is not None and result.checks.parent == tmp_path / "demo" / "report"
    assert "<h2 id=rules>" in result.checks.read_text()
    assert (tmp_path / "demo" / "report" / "tuning_trials.png").stat().st_size > 5000
    assert result.evaluation is not None
    assert result.evaluation.images == sum(result.report.counts["test"].values())
    assert all(Path(plot).is_file() for plot in result.evaluation.plots)


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sm_imgclf.data.digits import digits_to_folder

    root = tmp_path_factory.mktemp("cli-digits")
    images = digits_to_folder(root / "digits", limit_per_class=12)
    return images


TINY = [
    "--model",
    "resnet18",
    "--weights",
    "none",
    "--trainable",
    "all",
    "--hp",
    "image_size=16",
    "--hp",
    "epochs=2",
    "--hp",
    "augmentation=none",
    "--hp",
    "record_every=2",
]


def run_json(args: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> object:
    assert main(args) == code, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_train_report_deploy_predict_evaluate(
    digits_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--session-root", str(tmp_path / "s"), "--json"]
    split = tmp_path / "split"
    import shutil

    shutil.copytree(digits_folder, split / "train")
    trained = run_json(["train", str(split), *TINY, "--job-name", "cli-job", *root], capsys)
    assert trained["status"] == "Completed" and trained["model_uri"].endswith("model.tar.gz")
    assert [m["epoch"] for m in trained["metrics"] if m["epoch"]] == [1, 2]
    listed = run_json(["jobs", "list", *root], capsys)
    assert {"name": "cli-job", "status": "Completed"} in listed
    code = main(["report", "cli-job", "--out", str(tmp_path / "checks.html"), *root])
    checks = json.loads(capsys.readouterr().out)
    assert code == (1 if any(r["triggered"] for r in checks["rules"]) else 0)
    assert len(checks["rules"]) == 8 and (tmp_path / "checks.html").is_file()
    assert run_json(["deploy", "cli-job", "--endpoint", "cli-ep", *root], capsys) == {
        "endpoint": "cli-ep"
    }
    try:
        assert run_json(["endpoints", "list", *root], capsys) == [
            {"name": "cli-ep", "status": "InService"}
        ]
        seven = next((digits_folder / "7").glob("*.png"))
        answers = run_json(["predict", "cli-ep", str(seven), "--top-k", "2", *root], capsys)
        assert answers[0]["image"] == str(seven) and len(answers[0]["top_k"]) == 2
        evaluation = run_json(["evaluate", "cli-ep", str(digits_folder), *root], capsys)
        assert evaluation["images"] == 120
    finally:
        assert run_json(["endpoints", "delete", "cli-ep", *root], capsys) == {"deleted": "cli-ep"}
    assert run_json(["endpoints", "list", *root], capsys) == []


def test_tune_from_the_command_line(
    digits_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    for folder in sorted(digits_folder.iterdir()):
        for index, image in enumerate(sorted(folder.glob("*.png"))):
            target = tmp_path / "data" / ("train" if index < 8 else "valid") / folder.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / image.name)
    result = run_json(
        [
            "tune",
            str(tmp_path / "data"),
            *TINY,
            "--param",
            "lr=log:1e-3:1e-1",
            "--param",
            "batch_size=16,32",
            "--max-jobs",
            "2",
            "--parallel",
            "2",
            "--strategy",
            "random",
            "--name",
            "cli-tune",
            "--session-root",
            str(tmp_path / "s"),
            "--json",
        ],
        capsys,
    )
    assert result["status"] == "Completed" and len(result["trials"]) == 2
    assert result["best"]["hyperparameters"]["batch_size"] in (16, 32)
    assert isinstance(result["best"]["hyperparameters"]["lr"], float)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "{data}", "--hp", "lr"], 2, "--hp must be name=value"),
        (["train", "{data}", "--hp", "lr=fast"], 2, "lr must be a number"),
        (["tune", "{data}", "--param", "lr=log:1e-3"], 2, "--param lr must be"),
        (["tune", "{data}", "--param", "lr=log:a:b"], 2, "--param lr must be log:<min>:<max>"),
        (["train", "{data}", "--model", "resnt18"], 2, "Did you mean 'resnet18'"),
        (
            ["train", "{data}", "--model", "teamnets.tiny:tiny", "--source-dir", "/no/such/dir"],
            2,
            "source_dir must be an existing folder",
        ),
        (["jobs", "stop"], 2, "jobs stop must be given a job name"),
        (["endpoints", "delete"], 2, "endpoints delete must be given"),
        (["report", "no-such-job"], 3, "No local training job named 'no-such-job'"),
        (["predict", "no-such-endpoint", "x.png"], 3, "No local endpoint named"),
    ],
)
def test_command_errors(
    args: list[str],
    code: int,
    message: str,
    digits_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [a.replace("{data}", str(digits_folder)) for a in args]
    assert main([*args, "--session-root", str(tmp_path / "s")]) == code
    assert message in capsys.readouterr().err
    if args[0] == "train":  # refused before anything was uploaded
        assert not (tmp_path / "s" / "store").exists()


def test_every_command_has_quick_help() -> None:
    code = (
        "import sys, contextlib, io, time\n"
        "from sm_imgclf.cli.main import main\n"
        "for name in ['train', 'tune', 'report', 'jobs', 'deploy', 'predict', 'evaluate',"
        " 'endpoints']:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):\n"
        "        main([name, '--help'])\n"
        "    assert '--backend' in out.getvalue(), name\n"
        "heavy = ('torch', 'boto3', 'PIL', 'numpy', 'optuna')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
