"""Backbone features shared across head-only jobs: computed once, read by every later job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sm_imgclf as smi
from sm_imgclf.contracts.hyperparameters import Hyperparameters
from sm_imgclf.runtime.job import feature_store
from sm_imgclf.runtime.job.contract import JobEnvironment
from sm_imgclf.runtime.job.main import parse_args, run
from sm_imgclf.runtime.sources import resolve

HEAD = {
    "image_size": 32,
    "epochs": 3,
    "batch_size": 32,
    "augmentation": "none",
    "lr": 0.01,
    "record_every": 0,
}
COMPUTED = "features: backbone run once"
READ = "from the shared store"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, smi.Channels]:
    root = tmp_path_factory.mktemp("shared")
    smi.digits_to_folder(root / "images", limit_per_class=20)
    session = smi.LocalSession(root / "uploads")
    data = smi.ImageFolderDataset(root / "images").split(valid=0.25, seed=0)
    return root, data.upload(session, "digits")


def head_job(session: smi.LocalSession, **hp: object) -> smi.TransferLearningEstimator:
    return smi.TransferLearningEstimator(
        "efficientnet_lite0", session=session, hyperparameters={**HEAD, **hp}
    )


def log_of(job: smi.TrainingJob) -> str:
    assert job.status == "Completed", job.failure_reason
    return "\n".join(job.logs())


def best(job: smi.TrainingJob) -> float:
    return float(job.metrics[-1]["valid:accuracy"])


@pytest.mark.slow
def test_a_second_job_reads_the_features_and_learns_the_same(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    session = smi.LocalSession(tmp_path / "session")
    first = head_job(session).fit(channels, logs=False)
    second = head_job(session, lr=0.01).fit(channels, logs=False)
    assert COMPUTED in log_of(first) and READ not in log_of(first)
    assert READ in log_of(second) and COMPUTED not in log_of(second)
    assert best(second) == best(first)  # the same features, the same seed
    assert len(list((tmp_path / "session" / "features").glob("*.pt"))) == 1
    other = head_job(session, image_size=48).fit(channels, logs=False)
    assert COMPUTED in log_of(other)  # another image size is another key
    alone = head_job(smi.LocalSession(tmp_path / "alone", feature_store=False)).fit(
        channels, logs=False
    )
    assert COMPUTED in log_of(alone) and "stored for later jobs" not in log_of(alone)
    assert best(alone) == best(first)


@pytest.mark.slow
def test_jobs_that_cannot_share_say_why(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    session = smi.LocalSession(tmp_path / "session")
    job = head_job(session, augmentation="light", epochs=1).fit(channels, logs=False)
    assert "features: not shared, since augmentation=light, not none" in log_of(job)


@pytest.mark.slow
def test_two_jobs_starting_together_compute_once(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    session = smi.LocalSession(tmp_path / "session")
    jobs = [head_job(session).fit(channels, wait=False, logs=False) for _ in range(2)]
    for job in jobs:
        job.wait(logs=False)
    logs = [log_of(job) for job in jobs]
    assert sum(COMPUTED in log for log in logs) == 1
    assert sum(READ in log for log in logs) == 1
    assert best(jobs[0]) == best(jobs[1])


def sharing_for(digits: tuple, store: Path) -> feature_store.Sharing:
    _, channels = digits
    folders = {n: Path(u.removeprefix("file://")) for n, u in channels.items()}
    settings = {"model": "efficientnet_lite0", "weights": "DEFAULT", "trainable": ["head"]}
    sharing, reason = feature_store.plan(
        settings,
        Hyperparameters.from_dict(HEAD),
        folders,
        resolve("efficientnet_lite0"),
        distributed=False,
        env={"SM_IMGCLF_FEATURE_STORE": str(store)},
    )
    assert sharing is not None, reason
    return sharing


def test_a_writer_killed_mid_way_leaves_nothing_to_read(digits: tuple, tmp_path: Path) -> None:
    sharing = sharing_for(digits, tmp_path / "store")
    code = (
        "import os, signal, sys, pickle\n"
        "from sm_imgclf.runtime.job import feature_store\n"
        "sharing = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "with feature_store.claimed(sharing) as stored:\n"
        "    assert stored is None\n"
        "    partial = sharing.path.with_name(f'.{sharing.key}.{os.getpid()}.partial')\n"
        "    partial.write_bytes(b'PK half a file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    import pickle

    done = subprocess.run([sys.executable, "-c", code, pickle.dumps(sharing).hex()], check=False)
    assert done.returncode == -9
    with feature_store.claimed(sharing) as stored:  # the lock died with its holder
        assert stored is None  # the partial file is never read


def test_a_damaged_or_foreign_file_is_recomputed(
    digits: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sharing = sharing_for(digits, tmp_path / "store")
    sharing.folder.mkdir(parents=True)
    sharing.path.write_bytes(b"not a torch file")
    assert feature_store.read(sharing) is None
    assert "unreadable" in capsys.readouterr().out


def test_the_key_ignores_head_settings_and_follows_the_data(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    folders = {n: Path(u.removeprefix("file://")) for n, u in channels.items()}
    found = resolve("efficientnet_lite0")
    settings = {"model": "efficientnet_lite0", "weights": "DEFAULT", "trainable": ["head"]}

    def key(**hp: object) -> dict[str, object]:
        return feature_store.feature_key(
            settings, Hyperparameters.from_dict({**HEAD, **hp}), folders, found
        )

    assert key(lr=0.1, epochs=9, head_hidden=64, batch_size=8) == key()
    assert key(image_size=64) != key()
    fewer = {"train": folders["train"]}
    assert (
        feature_store.feature_key(settings, Hyperparameters.from_dict(HEAD), fewer, found) != key()
    )


def test_a_weights_file_is_keyed_by_its_content_not_its_copy(digits: tuple, tmp_path: Path) -> None:
    _, channels = digits
    folders = {n: Path(u.removeprefix("file://")) for n, u in channels.items()}
    found = resolve("resnet18")

    def key(path: Path) -> dict[str, object]:
        settings = {"model": "resnet18", "weights": str(path), "trainable": ["head"]}
        return feature_store.feature_key(settings, Hyperparameters.from_dict(HEAD), folders, found)

    first, copy = tmp_path / "a" / "w.pt", tmp_path / "b" / "w.pt"
    for path in (first, copy):
        path.parent.mkdir()
        path.write_bytes(b"the same weights")
    os.utime(copy, (1, 1))  # another machine's copy: another change time
    assert key(first)["weights"] == [str(first), key(copy)["weights"][1]]
    copy.write_bytes(b"other weights")
    assert key(first)["weights"][1] != key(copy)["weights"][1]


def job_environment(
    tmp_path: Path, channels: smi.Channels, name: str, **extra: Path
) -> JobEnvironment:
    folders = {n: Path(u.removeprefix("file://")) for n, u in channels.items()}
    return JobEnvironment(
        channels={**folders, **extra},
        model_dir=tmp_path / name / "model",
        output_dir=tmp_path / name / "output",
        checkpoint_dir=tmp_path / name / "checkpoints",
        num_gpus=0,
        hosts=("algo-1",),
        current_host="algo-1",
    )


def job_args(*extra: str, **hp: object) -> tuple[dict, Hyperparameters]:
    """The parsed arguments of a head-only lite0 job with ``HEAD`` and ``hp``."""
    pairs = [part for k, v in {**HEAD, **hp}.items() for part in (f"--{k}", str(v))]
    return parse_args(
        [
            "--model",
            "efficientnet_lite0",
            "--weights",
            "DEFAULT",
            "--trainable",
            "head",
            *pairs,
            *extra,
        ]
    )


@pytest.mark.slow
def test_a_features_job_serves_trials_through_a_read_only_channel(
    digits: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As on SageMaker: the features job's checkpoint folder becomes the trials' channel."""
    _, channels = digits
    monkeypatch.delenv("SM_IMGCLF_FEATURE_STORE", raising=False)
    settings, params = job_args("--features-only", "true")
    features = job_environment(tmp_path, channels, "features")
    described = run(features, settings, params)["features"]
    assert COMPUTED in capsys.readouterr().out
    store = features.checkpoint_dir / "features"
    assert [p.name for p in store.glob("*.pt")] == [described["file"]]
    assert json.loads((features.model_dir / "features.json").read_text())["key"] == described["key"]
    assert not (features.model_dir / "model.pth").exists()  # it trains and packages nothing
    store.chmod(0o555)  # a channel is read-only to the trial: it must not try to write
    try:
        settings, params = job_args(lr=0.05)
        reading = run(
            job_environment(tmp_path, channels, "trial", features=store), settings, params
        )
        out = capsys.readouterr().out
        assert READ in out and COMPUTED not in out
        assert sorted(p.name for p in store.iterdir()) == sorted(
            [described["file"], f"{described['key']}.lock"]
        )  # nothing added
    finally:
        store.chmod(0o755)
    alone = run(job_environment(tmp_path, channels, "alone"), settings, params)
    assert COMPUTED in capsys.readouterr().out

    def learned(metrics: dict) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in metrics["history"]]

    assert learned(reading) == learned(alone)  # the same features, the same head


@pytest.mark.slow
def test_a_trial_whose_channel_lacks_its_features_computes_them(
    digits: tuple,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, channels = digits
    monkeypatch.delenv("SM_IMGCLF_FEATURE_STORE", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    settings, params = job_args(epochs=1)
    run(job_environment(tmp_path, channels, "trial", features=empty), settings, params)
    out = capsys.readouterr().out
    assert "channel holds no features for this job" in out and COMPUTED in out
    assert list(empty.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("share", [True, False])
def test_tuning_trials_share_as_their_session_says(
    digits: tuple, tmp_path: Path, share: bool
) -> None:
    _, channels = digits
    session = smi.LocalSession(tmp_path / "session", feature_store=share)
    run = smi.TuningRun(
        head_job(session, epochs=2),
        {"lr": smi.Continuous(1e-3, 1e-1, scale="log")},
        strategy="random",
        max_jobs=3,
        max_parallel_jobs=1,
        seed=0,
    )
    logs = [log_of(trial.job) for trial in run.run(channels, name="heads", logs=False).trials]
    assert sum(COMPUTED in log for log in logs) == (1 if share else 3)
    assert sum(READ in log for log in logs) == (2 if share else 0)
