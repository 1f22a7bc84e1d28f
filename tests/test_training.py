"""Local training end to end: the job program, the estimator, resumption and failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

import sm_imgclf as smi
from helpers.images import write_image
from sm_imgclf._archive import safe_extract
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.loop import oom_guard
from sm_imgclf.runtime.job.main import parse_args, run
from sm_imgclf.runtime.serving.handler import input_fn, model_fn, output_fn, predict_fn

SMALL = {"image_size": 32, "lr": 0.003, "batch_size": 32, "augmentation": "none"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[smi.LocalSession, smi.Channels]:
    root = tmp_path_factory.mktemp("digits")
    smi.digits_to_folder(root / "images", limit_per_class=60)
    session = smi.LocalSession(root / "session")
    data = smi.ImageFolderDataset(root / "images").split(valid=0.2, test=0.2, seed=0)
    return session, data.upload(session, "digits")


def estimator(session: smi.Session, **hp: object) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "resnet18", session=session, weights=None, trainable="all", hyperparameters={**SMALL, **hp}
    )


def test_digits_from_scratch_reach_90_percent(digits: tuple, tmp_path: Path) -> None:
    session, channels = digits
    job = estimator(session, epochs=6).fit(channels, logs=False)
    assert job.status == "Completed"
    epochs = [m for m in job.metrics if m["epoch"] is not None]
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4, 5, 6]
    assert max(m["valid:accuracy"] for m in epochs) >= 0.9
    package = safe_extract(job.model_uri.removeprefix("file://"), tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["architecture"] == "resnet18" and manifest["image_size"] == 32
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["metrics"]["valid:accuracy"] >= 0.9 and "test:accuracy" in manifest["metrics"]
    assert (package / "code/inference.py").is_file()
    shipped = package / "code/sm_imgclf"
    assert (shipped / "runtime/serving/handler.py").is_file()
    assert not any(
        (shipped / part).exists()
        for part in ("cli", "backends", "runtime/job", "training", "session.py")
    )
    assert_serves_from_its_own_code(package, seven_png(channels))
    state = torch.load(package / "model.pth", weights_only=True)
    assert state["fc.weight"].shape == (10, 512)
    loaded = model_fn(str(package))
    seven = seven_png(channels)
    answer = json.loads(
        output_fn(predict_fn(input_fn(seven.read_bytes(), "image/png", loaded), loaded))
    )
    top = answer["predictions"][0]["top_k"]
    assert len(top) == 5 and top[0]["label"] in manifest["class_names"]
    assert abs(sum(p["probability"] for p in top) - 1) < 0.5


def seven_png(channels: dict[str, str]) -> Path:
    return next((Path(channels["test"].removeprefix("file://")) / "7").glob("*.png"))


def assert_serves_from_its_own_code(package: Path, image: Path) -> None:
    """The package's code/ alone (not the installed library) loads the model and answers."""
    script = (
        "import json, sys\n"
        "import sm_imgclf\n"
        "from sm_imgclf.runtime.serving.handler import model_fn, transform_fn\n"
        "assert sm_imgclf.__file__.startswith(sys.argv[1]), sm_imgclf.__file__\n"
        "assert callable(sm_imgclf.backbone)  # what a user's model module declares itself with\n"
        "body = open(sys.argv[2], 'rb').read()\n"
        "answer, _ = transform_fn(model_fn(sys.argv[1] + '/..'), body, 'image/png',"
        " 'application/json')\n"
        "print(json.loads(answer)['predictions'][0]['top_k'][0]['label'])\n"
    )
    code = package / "code"
    done = subprocess.run(
        [sys.executable, "-c", script, str(code), str(image)],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=package,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in [str(d) for d in range(10)]


def weights_file(folder: Path) -> Path:
    """ImageNet-shaped resnet18 weights, seeded: a stand-in for a downloaded file."""
    import torchvision

    torch.manual_seed(0)
    path = folder / "resnet18-weights.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_random_frozen_features_are_refused_and_the_default_follows_the_weights() -> None:
    session = smi.Session(smi.FakeBackend())
    assert smi.TransferLearningEstimator("resnet18", session=session, weights=None).trainable == (
        "all",
    )
    assert smi.TransferLearningEstimator("resnet18", session=session).trainable == ("head",)
    for trainable in ("head", ["layer4"]):
        with pytest.raises(
            smi.ConfigurationError, match="trainable must be 'all' when weights=None"
        ) as caught:
            smi.TransferLearningEstimator(
                "resnet18", session=session, weights=None, trainable=trainable
            )
        assert "random values" in str(caught.value) and "trainable='all'" in str(caught.value)


def test_an_explicit_augmentation_with_a_frozen_head_says_what_it_costs(
    digits: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sm_imgclf.runtime.job.data import load_splits
    from sm_imgclf.runtime.job.setup import prepare

    _, channels = digits
    hp = smi.Hyperparameters(image_size=32, augmentation="light", record_every=0)
    settings, _ = parse_args(["--model", "resnet18", "--trainable", "head"])
    env = in_process_env(tmp_path, dict(channels))

    splits = load_splits(dict(env.channels), 32, "light", 0)
    trainer, _, _ = prepare(
        settings, hp, splits, torch.device("cpu"), env, None, features_ready=False
    )
    assert not trainer.features
    out = capsys.readouterr().out
    assert "features: not cached, since augmentation='light'" in out
    assert f"all {len(splits['train'])} training images" in out


@pytest.mark.slow
def test_generated_colours_with_cached_features(tmp_path: Path) -> None:
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    for split, count in (("train", 12), ("valid", 4)):
        for name, rgb in colours.items():
            for i in range(count):
                noise = write_image(
                    tmp_path / "noise.png", size=(40, 40), seed=hash((split, name, i)) % 2**31
                )
                image = Image.blend(Image.new("RGB", (40, 40), rgb), Image.open(noise), 0.25)
                (tmp_path / "data" / split / name).mkdir(parents=True, exist_ok=True)
                image.save(tmp_path / "data" / split / name / f"{i}.png")
    session = smi.LocalSession(tmp_path / "s")
    channels = smi.ImageFolderDataset(tmp_path / "data").upload(session, "colours")
    # Weights from a file (here a seeded random init): the head trains on cached features.
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=str(weights_file(tmp_path)),
        hyperparameters={**SMALL, "epochs": 15, "lr": 0.01},
    )
    assert est.trainable == ("head",)
    job = est.fit(channels, logs=False)
    assert any("features: backbone run once" in line for line in job.logs())
    assert job.metrics[-1]["valid:accuracy"] >= 0.9


def test_killed_job_resumes_from_its_checkpoint(digits: tuple) -> None:
    session, channels = digits
    est = estimator(session, epochs=5, lr_schedule="none")
    job = est.fit(channels, wait=False)
    folder = session.backend.job_dir(job.name)  # type: ignore[attr-defined]
    deadline = time.time() + 240
    while not any(line.startswith("epoch=2 ") for line in job.logs()):
        assert time.time() < deadline and job.status == "InProgress", job.logs()
        time.sleep(0.2)
    os.kill(json.loads((folder / "status.json").read_text())["job_pid"], signal.SIGKILL)
    while job.status == "InProgress":
        time.sleep(0.2)
    assert job.status == "Failed" and "signal 9" in (job.failure_reason or "")
    resumed = est.fit(channels, name=job.name, logs=False)
    log = resumed.logs()
    assert any(line.startswith("resumed from checkpoint at epoch") for line in log)
    assert resumed.status == "Completed"
    assert sorted({m["epoch"] for m in resumed.metrics if m["epoch"]}) == [1, 2, 3, 4, 5]


def test_stop_keeps_the_checkpoint(digits: tuple) -> None:
    session, channels = digits
    # Far more epochs than any machine runs before the stop: the stop always finds it running.
    job = estimator(session, epochs=10_000).fit(channels, wait=False)
    folder = session.backend.job_dir(job.name)  # type: ignore[attr-defined]
    while not (folder / "checkpoints/checkpoint.pth").exists():
        assert job.status == "InProgress", job.logs()
        time.sleep(0.2)
    job.stop()
    assert job.wait(logs=False).status == "Stopped"
    assert (folder / "checkpoints/checkpoint.pth").exists()
    # Stopped as SageMaker stops a job (SIGTERM): its best epoch is still packaged.
    assert any(
        line.startswith("stopping early: ") and "a stop was asked for" in line
        for line in job.logs()
    )
    assert job.model_uri is not None and job.model_uri.endswith("model.tar.gz")


def test_failure_reason_reaches_the_caller(digits: tuple, tmp_path: Path) -> None:
    session, channels = digits
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=str(weights_file(tmp_path)),
        trainable=["layer9"],
        hyperparameters={**SMALL, "epochs": 1},
    )
    with pytest.raises(smi.TrainingJobFailedError, match="trainable must be") as caught:
        est.fit(channels, logs=False)
    assert "layer4" in (caught.value.reason or "")


def in_process_env(tmp_path: Path, channels: dict[str, str]) -> JobEnvironment:
    return JobEnvironment(
        channels={k: Path(v.removeprefix("file://")) for k, v in channels.items()},
        model_dir=tmp_path / "model",
        output_dir=tmp_path / "output/data",
        checkpoint_dir=tmp_path / "checkpoints",
        num_gpus=0,
        hosts=("localhost",),
        current_host="localhost",
    )


def job_args(epochs: int) -> tuple[dict, smi.Hyperparameters]:
    argv = ["--model", "resnet18", "--trainable", "all"]
    for key, value in {**SMALL, "epochs": epochs}.items():
        argv += [f"--{key}", str(value)]
    return parse_args(argv)


def test_corrupt_checkpoint_falls_back_to_the_older_one(
    digits: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, channels = digits
    env = in_process_env(tmp_path, dict(channels))
    run(env, *job_args(2))
    (env.checkpoint_dir / "checkpoint.pth").write_bytes(b"torn write")
    metrics = run(env, *job_args(3))
    out = capsys.readouterr().out
    assert "resumed from the older checkpoint.prev.pth" in out
    assert "resumed from checkpoint at epoch 1" in out
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    for name in ("checkpoint.pth", "checkpoint.prev.pth"):
        (env.checkpoint_dir / name).write_bytes(b"garbage")
    with pytest.raises(smi.BackendError, match="Every checkpoint is unreadable"):
        run(env, *job_args(4))
    assert (env.checkpoint_dir / "checkpoint.prev.pth").read_bytes() == b"garbage"


def test_missing_and_empty_channels(digits: tuple, tmp_path: Path) -> None:
    session, channels = digits
    with pytest.raises(smi.ConfigurationError, match="'train' channel"):
        estimator(session).plan({"valid": channels["valid"]})
    with pytest.raises(smi.ConfigurationError, match="an existing folder"):
        estimator(session).fit({"train": (tmp_path / "nope").as_uri()})
    (tmp_path / "empty/a").mkdir(parents=True)
    env = in_process_env(tmp_path, {"train": (tmp_path / "empty").as_uri()})
    with pytest.raises(smi.DatasetError, match="holds no images"):
        run(env, *job_args(1))
    env = in_process_env(tmp_path, {"valid": channels["valid"]})
    with pytest.raises(smi.ConfigurationError, match="SM_CHANNEL_TRAIN is not set"):
        run(env, *job_args(1))


def test_class_count_mismatch_between_channels(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    for digit in range(3):
        write_image(tmp_path / "other" / f"x{digit}" / "a.png")
    env = in_process_env(
        tmp_path, {"train": channels["train"], "valid": (tmp_path / "other").as_uri()}
    )
    with pytest.raises(
        smi.ConfigurationError, match="'valid' channel has 3 classes but 'train' has 10"
    ):
        run(env, *job_args(1))


def test_out_of_memory_names_the_batch_size() -> None:
    refused = pytest.raises(
        smi.ConfigurationError, match=r"batch_size=64 does not fit.*batch_size=32"
    )
    with refused, oom_guard(64, torch.device("cpu")):
        torch.empty(2**50, dtype=torch.uint8)  # a real allocator refusal


def test_bad_job_arguments() -> None:
    with pytest.raises(smi.ConfigurationError, match="'--name value' pairs"):
        parse_args(["--lr"])
    with pytest.raises(smi.ConfigurationError, match="Did you mean 'epochs'"):
        parse_args(["--epoch", "3"])


def test_unsafe_archives_write_nothing(tmp_path: Path) -> None:
    import io
    import tarfile

    from sm_imgclf._archive import UnsafeArchiveError

    for name, kind in (
        ("../evil.txt", tarfile.REGTYPE),
        ("/abs.txt", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
    ):
        archive = tmp_path / f"{abs(hash(name))}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            good = tarfile.TarInfo("fine.txt")
            good.size = 2
            tar.addfile(good, io.BytesIO(b"ok"))
            bad = tarfile.TarInfo(name)
            bad.type = kind
            bad.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            bad.size = 0
            tar.addfile(bad, io.BytesIO(b""))
        target = tmp_path / f"out-{abs(hash(name))}"
        with pytest.raises(UnsafeArchiveError, match="Refusing archive member"):
            safe_extract(archive, target)
        assert not (target / "fine.txt").exists()


def test_two_hosts_train_data_parallel(digits: tuple, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    _, channels = digits
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        "--model",
        "resnet18",
        "--weights",
        "none",
        "--trainable",
        "all",
        "--epochs",
        "2",
        "--image_size",
        "32",
        "--augmentation",
        "light",
    ]
    hosts = ["algo-1", "algo-2"]
    processes = []
    for host in hosts:
        env = dict(
            os.environ,
            SM_HOSTS=json.dumps(hosts),
            SM_CURRENT_HOST=host,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            SM_CHANNEL_TRAIN=channels["train"].removeprefix("file://"),
            SM_CHANNEL_VALID=channels["valid"].removeprefix("file://"),
            SM_MODEL_DIR=str(tmp_path / host / "model"),
            SM_OUTPUT_DATA_DIR=str(tmp_path / host / "output/data"),
            SM_IMGCLF_CHECKPOINT_DIR=str(tmp_path / host / "checkpoints"),
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "sm_imgclf.runtime.job", *args],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "distributed: rank 0 of 2 (gloo)" in outputs[0]
    assert "distributed: rank 1 of 2 (gloo)" in outputs[1]
    assert outputs[0].count("\nepoch=") == 2 and "epoch=" not in outputs[1]
    assert (tmp_path / "algo-1/model/manifest.json").is_file()
    assert not (tmp_path / "algo-2/model").exists()


class CtrlCOnFirstEpoch:
    """An output stream that raises KeyboardInterrupt when the first epoch is printed."""

    def write(self, text: str) -> int:
        if text.startswith("epoch=1 "):
            raise KeyboardInterrupt
        return len(text)

    def flush(self) -> None:
        pass


def test_ctrl_c_while_waiting_stops_the_job(digits: tuple) -> None:
    session, channels = digits
    job = estimator(session, epochs=10_000).fit(channels, wait=False)
    with pytest.raises(KeyboardInterrupt):
        job.wait(poll=0.1, out=CtrlCOnFirstEpoch())  # type: ignore[arg-type]
    # The job honours the stop at its next step; wait for that state, however long it takes.
    while job.status != "Stopped":
        assert job.status in {"InProgress", "Stopping"}
        time.sleep(0.2)
    log = job.logs()
    assert any(
        "stopping early: " in line and "a stop was asked for" in line for line in log
    ) or any("no epoch ended, so there is no model to package" in line for line in log)


def test_a_tuning_trial_deletes_its_checkpoints_once_packaged(
    digits: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SageMaker copies a tuning job's whole checkpoint prefix into each trial it starts.
    _, channels = digits
    env = replace(in_process_env(tmp_path, dict(channels)), checkpoints_shared=True)
    run(env, *job_args(1))
    assert (env.model_dir / "model.tar.gz").is_file() or any(env.model_dir.iterdir())
    assert not env.checkpoint_dir.exists()
    assert "deleted this trial's" in capsys.readouterr().out
    alone = in_process_env(tmp_path / "alone", dict(channels))
    run(alone, *job_args(1))
    assert (alone.checkpoint_dir / "checkpoint.pth").is_file()  # a job of its own keeps them


def test_a_run_limit_ends_with_the_best_epoch_packaged(digits: tuple, tmp_path: Path) -> None:
    session, channels = digits
    # Epochs no run limit can hold: the job must stop itself in time. The limit leaves
    # a loaded machine room for its start and first epoch (a minute did not, beside a hog).
    est = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={**SMALL, "epochs": 10_000, "lr_schedule": "none"},
        compute=smi.Compute(max_run=150),
    )
    job = est.fit(channels, logs=False)
    assert job.status == "Completed"
    log = job.logs()
    [line] = [line for line in log if line.startswith("stopping early: ")]
    assert "of the 150 s run limit" in line and "is evaluated and packaged" in line
    assert any(line.startswith("test ") and "test:accuracy=" in line for line in log)
    package = safe_extract(job.model_uri.removeprefix("file://"), tmp_path / "package")
    manifest = json.loads((package / "manifest.json").read_text())
    trained = [m["epoch"] for m in job.metrics if m["epoch"] is not None]
    assert 1 <= len(trained) < 10_000 and "test:accuracy" in manifest["metrics"]


def test_attach(digits: tuple) -> None:
    session, channels = digits
    job = estimator(session, epochs=1).fit(channels, logs=False)
    again = smi.TrainingJob.attach(job.name, session)
    assert again.status == "Completed" and again.model_uri == job.model_uri
    assert again.metrics == job.metrics
    with pytest.raises(smi.BackendError, match="No local training job named 'nope'"):
        smi.TrainingJob.attach("nope", session)


def test_output_whose_reader_died_is_dropped_not_fatal(tmp_path: Path) -> None:
    import os

    from sm_imgclf.runtime.job.streams import SurvivingStream

    read, write = os.pipe()
    os.close(read)  # the toolkit that read the job's output is gone
    stream = SurvivingStream(open(write, "w", buffering=1))  # noqa: SIM115
    assert stream.write("epoch=1 ...\n") == len("epoch=1 ...\n")
    stream.flush()
    assert stream.write("still packaging\n") == len("still packaging\n")
