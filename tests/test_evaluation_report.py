"""The evaluation report, calibration and heatmaps: where a model errs, on which images, and why."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sm_imgclf as smi
from sm_imgclf.backends.fake import FakeBackend
from sm_imgclf.evaluation.calibration import expected_calibration_error, reliability
from sm_imgclf.evaluation.evaluate import _score
from sm_imgclf.evaluation.explain import ModelExplainer
from sm_imgclf.evaluation.scores import ScoredImage

CLASSES = ("001.cat", "002.dog", "003.bird")


def untrained_package(
    root: Path, classes: tuple[str, ...] = CLASSES, *, size: int = 32, model: str = "resnet18"
) -> Path:
    """A real model package (random weights) as ``model.tar.gz``, without a training run."""
    from sm_imgclf.runtime.models import rebuild_model, replace_head
    from sm_imgclf.runtime.package import write_package
    from sm_imgclf.runtime.sources import resolve

    found = resolve(model)
    network = found.factory()
    head = replace_head(network, len(classes))
    assert rebuild_model(model, head) is not None
    folder = root / "package"
    write_package(
        folder,
        network.state_dict(),
        {
            "architecture": model,
            "source": found.source,
            "head": head.to_dict(),
            "class_ids": list(classes),
            "class_names": [c.split(".")[-1] for c in classes],
            "image_size": size,
            "resize_size": size,
            "mean": list(found.mean),
            "std": list(found.std),
        },
    )
    archive = root / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in folder.iterdir():
            tar.add(item, arcname=item.name)
    return archive


def images(root: Path, count: int = 4) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = root / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def scored_from(
    probabilities: np.ndarray,
    truths: np.ndarray,
    files: list[str] | None = None,
    ids: tuple[str, ...] | None = None,
) -> list[ScoredImage]:
    ids = ids or tuple(f"{i:03d}" for i in range(probabilities.shape[1]))
    rows = []
    for n, (p, t) in enumerate(zip(probabilities, truths, strict=True)):
        order = np.argsort(-p)[:3]
        rows.append(
            ScoredImage(
                files[n] if files else f"img{n}.png",
                ids[t],
                ids[order[0]],
                float(p[order[0]]),
                tuple((ids[i], f"class {ids[i]}", float(p[i])) for i in order),
                5.0 + n % 7,
            )
        )
    return rows


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# Bad input first -----------------------------------------------------------------------------


def test_reliability_refuses_bad_bins_and_lengths() -> None:
    with pytest.raises(smi.ConfigurationError, match="bins"):
        reliability([0.5], [True], bins=0)
    with pytest.raises(smi.ConfigurationError, match="correct"):
        reliability([0.5, 0.9], [True])


def test_explainer_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(smi.ConfigurationError, match="model"):
        ModelExplainer(tmp_path / "missing.tar.gz").explain(images(tmp_path, 1))
    with pytest.raises(smi.ConfigurationError, match="session"):
        ModelExplainer("s3://bucket/model.tar.gz").explain(images(tmp_path, 1))
    package = untrained_package(tmp_path)
    with ModelExplainer(package) as explainer:
        with pytest.raises(smi.ConfigurationError, match="classes"):
            explainer.explain(images(tmp_path, 2), classes=["001.cat"])
        with pytest.raises(smi.ConfigurationError, match=r"002\.dog"):
            explainer.explain(images(tmp_path, 1), classes=["no-such-class"])
        with pytest.raises(smi.ConfigurationError, match="alpha"):
            explainer.explain(images(tmp_path, 1))[0].overlay(alpha=2.0)


def test_a_job_without_a_model_cannot_be_explained() -> None:
    backend = FakeBackend()
    session = smi.Session(backend)
    job = smi.TransferLearningEstimator("resnet18", session=session, weights=None).fit(
        {"train": backend.store.uri("d/train")}, wait=False
    )
    with pytest.raises(smi.ConfigurationError, match="no model package yet"):
        ModelExplainer(job).explain(Path("any.png"))


# Calibration ---------------------------------------------------------------------------------


def test_an_over_confident_model_has_a_larger_calibration_error(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    features, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features[:300], labels[:300])
    logits, truths = model.decision_function(features[900:]), labels[900:]
    results = {
        scale: _score(scored_from(softmax(logits * scale), truths)) for scale in (4.0, 1.0, 0.3)
    }
    for result in results.values():
        # Scaling logits never changes the best class, only how sure the model says it is.
        assert result.accuracy == pytest.approx(float((logits.argmax(1) == truths).mean()))
    sharp, plain = results[4.0], results[1.0]
    assert np.mean([s.score for s in sharp.scored]) > sharp.accuracy + 0.05  # over-confident
    assert sharp.expected_calibration_error > 2 * plain.expected_calibration_error
    assert "(over-confident)" in sharp.report(tmp_path / "sharp.html", gallery=0).read_text()
    assert "(under-confident)" in results[0.3].report(tmp_path / "soft.html", gallery=0).read_text()


def test_reliability_bins_add_up() -> None:
    confidences = [0.05, 0.15, 0.95, 1.0, 0.99]
    bins = reliability(confidences, [False, True, True, True, False])
    assert [b.count for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert bins[-1].accuracy == pytest.approx(2 / 3)
    perfect = reliability([1.0, 1.0], [True, True])
    assert expected_calibration_error(perfect) == 0.0


# The report ----------------------------------------------------------------------------------


def many_classes(tmp_path: Path, classes: int = 133, per_class: int = 6) -> smi.Evaluation:
    rng = np.random.default_rng(1)
    truths = np.repeat(np.arange(classes), per_class)
    logits = rng.normal(size=(len(truths), classes))
    logits[np.arange(len(truths)), truths] += 3.0
    confusions = truths[: len(truths) // 4]
    logits[np.arange(len(confusions)), (confusions + 1) % classes] += 6.0  # a neighbour wins
    files = [str(p) for p in images(tmp_path, len(truths))]
    result = _score(scored_from(softmax(logits), truths, files))
    result.source = "dogImages/test"
    return result


def test_confused_pairs_are_the_largest_off_diagonal_cells(tmp_path: Path) -> None:
    result = many_classes(tmp_path, classes=12, per_class=8)
    pairs = result.confused_pairs(5)
    counts = [count for _, _, count in pairs]
    assert counts == sorted(counts, reverse=True) and all(t != p for t, p, _ in pairs)
    index = {c: i for i, c in enumerate(result.class_ids)}
    for true, guess, count in pairs:
        assert result.confusion[index[true]][index[guess]] == count
    off_diagonal = sorted(
        (v for i, row in enumerate(result.confusion) for j, v in enumerate(row) if i != j),
        reverse=True,
    )
    assert counts == off_diagonal[:5]


def test_133_classes_keep_the_page_readable(tmp_path: Path) -> None:
    result = many_classes(tmp_path)
    page = result.report(tmp_path / "out" / "eval.html", gallery=12, top_pairs=15)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert "class=matrix" not in text and "133 classes: the full matrix is left out" in text
    assert text.count("<tr><td>class ") >= 15  # the confused pairs' rows
    assert text.count("class=shot") == 12 and "Pass <code>explain=</code>" in text
    assert text.count("<tr><td>class ") >= 133  # the per-class table holds every class


def test_a_small_report_shows_the_matrix_with_counts(tmp_path: Path) -> None:
    result = many_classes(tmp_path, classes=5, per_class=4)
    text = result.report(tmp_path / "eval.html").read_text()
    assert "class=matrix" in text
    for row in result.confusion:
        for count in row:
            if count:
                assert f">{count}</td>" in text


def test_heatmaps_from_a_package_in_the_fake_backends_store(tmp_path: Path) -> None:
    backend = FakeBackend()
    package = untrained_package(tmp_path)
    backend.store.put_bytes("jobs/j/model.tar.gz", package.read_bytes())
    uri = backend.store.uri("jobs/j/model.tar.gz")
    with ModelExplainer(uri, session=smi.Session(backend)) as explainer:
        found = explainer.explain(images(tmp_path, 3), classes=[None, "003.bird", None])
        assert explainer.target.method == "grad-cam" and explainer.target.layer == "layer3"
    assert [e.class_id for e in found][1] == "003.bird"
    with ModelExplainer(uri, session=smi.Session(backend)) as explainer:
        one = images(tmp_path, 1)[0]
        assert len(explainer.explain(one)) == 1 == len(explainer.explain(str(one)))
    for item in found:
        assert item.heatmap.shape == (32, 32) and item.heatmap.min() >= 0.0
        assert item.heatmap.max() <= 1.0 and item.image.size == (32, 32)
        assert item.png().startswith(b"\x89PNG")
    with pytest.raises(smi.BackendError, match="No fake model package"):
        ModelExplainer(backend.store.uri("nothing"), session=smi.Session(backend)).explain(
            images(tmp_path, 1)
        )


def test_heatmaps_from_a_package_in_s3(s3_session: smi.SageMakerSession, tmp_path: Path) -> None:
    package = untrained_package(tmp_path)
    store = s3_session.backend.store
    store.put_bytes("jobs/trained/output/model.tar.gz", package.read_bytes())
    with ModelExplainer(
        store.uri("jobs/trained/output/model.tar.gz"), session=s3_session
    ) as explainer:
        found = explainer.explain(images(tmp_path, 2))
    assert len(found) == 2 and found[0].method == "grad-cam"
    with pytest.raises(smi.BackendError, match="Cannot fetch the model package"):
        ModelExplainer(store.uri("jobs/none/model.tar.gz"), session=s3_session).explain(
            images(tmp_path, 1)
        )


# With trained models (slow) ------------------------------------------------------------------


def corner_dataset(root: Path, size: int = 128) -> Path:
    """Two classes told apart only by stripes in the top-left corner; the rest is noise."""
    rng = np.random.default_rng(0)
    patch = size // 4
    for split, count in (("train", 60), ("valid", 15), ("test", 15)):
        for label in (0, 1):
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                stripes = np.zeros((patch, patch, 3), np.uint8)
                if label == 0:
                    stripes[:, ::4] = 255
                else:
                    stripes[::4, :] = 255
                pixels[2 : 2 + patch, 2 : 2 + patch] = stripes
                path = root / split / f"stripes_{'vertical' if label == 0 else 'horizontal'}"
                path.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path / f"{i:03d}.png")
    return root


@pytest.mark.slow
def test_the_heatmap_points_at_the_corner_that_decides(tmp_path: Path) -> None:
    data = corner_dataset(tmp_path / "data")
    session = smi.LocalSession(tmp_path / "session")
    channels = smi.ImageFolderDataset(data).upload(session, "corner", progress=False)
    job = smi.TransferLearningEstimator(
        "efficientnet_lite0",
        session=session,
        trainable="all",
        hyperparameters={
            "image_size": 128,
            "epochs": 4,
            "lr": 0.003,
            "batch_size": 16,
            "augmentation": "none",
        },
    ).fit(channels, logs=False)
    files = sorted((data / "test").glob("*/*.png"))
    with ModelExplainer(job) as explainer:
        found = explainer.explain(files)
    assert np.mean([e.class_id == Path(e.source).parent.name for e in found]) >= 0.9
    half = 64
    corner = [e.heatmap[:half, :half].sum() / e.heatmap.sum() for e in found]
    opposite = [e.heatmap[half:, half:].sum() / e.heatmap.sum() for e in found]
    # A uniform map puts 0.25 in each quadrant.
    assert np.median(corner) > 0.4 and np.median(corner) > 4 * np.median(opposite)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("evaluated")
    smi.digits_to_folder(root / "images", limit_per_class=30)
    session = smi.LocalSession(root / "session")
    channels = (
        smi.ImageFolderDataset(root / "images")
        .split(valid=0.2, test=0.3, seed=0)
        .upload(session, "digits", progress=False)
    )
    job = smi.TransferLearningEstimator(
        "resnet18",
        session=session,
        weights=None,
        trainable="all",
        hyperparameters={"image_size": 32, "epochs": 3, "lr": 0.003, "augmentation": "none"},
    ).fit(channels, logs=False)
    test = Path(channels["test"].removeprefix("file://"))
    return {"root": root, "session": session, "job": job, "test": test}


@pytest.mark.slow
@pytest.mark.chromium
def test_the_report_renders_in_chromium(evaluated: dict, chromium: str) -> None:
    job, root = evaluated["job"], evaluated["root"]
    with job.deploy("report-endpoint") as endpoint:
        result = endpoint.evaluate(evaluated["test"])
    page = result.report(root / "report" / "evaluation.html", explain=job, gallery=9)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1100,3200"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for section in (
        "summary",
        "confused",
        "gallery",
        "per-class",
        "matrix",
        "calibration",
        "latency",
    ):
        assert f'id="{section}"' in dom, section
    shown = min(9, len(result.misclassified))
    assert dom.count('alt="heatmap of ') == shown and dom.count('class="shot"') == shown
    assert "Grad-CAM on <code>layer3</code>" in dom
    assert dom.count('src="data:image/png;base64,') >= 2  # reliability and latency charts
    shot = root / "report" / "evaluation.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 50_000


@pytest.mark.slow
def test_the_command_line_writes_the_report_and_heatmaps(
    evaluated: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sm_imgclf.cli.main import main

    job, session_root = evaluated["job"], str(evaluated["root"] / "session")
    common = ["--session-root", session_root]
    assert main(["deploy", job.name, "--endpoint", "cli-report", *common]) == 0
    try:
        report = tmp_path / "eval.html"
        assert (
            main(
                ["evaluate", "cli-report", str(evaluated["test"]), "--report", str(report), *common]
            )
            == 0
        )
        assert "report: " in capsys.readouterr().out and "(no heatmaps" not in report.name
        assert 'alt="heatmap of ' in report.read_text()  # the endpoint's own model
    finally:
        assert main(["endpoints", "delete", "cli-report", *common]) == 0
    image = next(evaluated["test"].glob("*/*.png"))
    out = tmp_path / "why"
    assert main(["explain", job.name, str(image), "--out", str(out), *common]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 1
    assert main(["explain", "no-such-job", str(image), *common]) == 2
    assert "model" in capsys.readouterr().err
