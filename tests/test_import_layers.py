"""The import-layer contract (tools/import_layers.py, run by nox -s lint) holds and bites."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layers() -> ModuleType:
    path = ROOT / "tools" / "import_layers.py"
    spec = importlib.util.spec_from_file_location("import_layers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "sm_imgclf",
        tmp_path / "sm_imgclf",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def add_line(tree: Path, module: str, line: str) -> None:
    path = tree / "sm_imgclf" / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_package_keeps_its_layers(layers: ModuleType) -> None:
    assert layers.check(ROOT / "src") == []


def test_an_upward_import_fails(layers: ModuleType, tree: Path) -> None:
    add_line(tree, "contracts/training.py", "from sm_imgclf.session import Session")
    upward = [p for p in layers.check(tree) if "higher layer" in p]
    assert len(upward) == 1 and "contracts.training imports sm_imgclf.session" in upward[0]


def test_an_annotation_import_counts(layers: ModuleType, tree: Path) -> None:
    add_line(
        tree,
        "backends/fake.py",
        "if TYPE_CHECKING:\n    from sm_imgclf.training.job import TrainingJob",
    )
    assert any("backends.fake imports sm_imgclf.training.job" in p for p in layers.check(tree))


def test_the_runtime_never_reaches_a_store(layers: ModuleType, tree: Path) -> None:
    add_line(tree, "runtime/job/main.py", "from sm_imgclf.storage.s3 import S3Store")
    assert any("kept apart" in p for p in layers.check(tree))


def test_a_circle_fails(layers: ModuleType, tree: Path) -> None:
    add_line(tree, "tuning/trial.py", "from sm_imgclf.tuning.result import TuningResult")
    [problem] = layers.check(tree)
    assert problem.startswith("import circle among: ")
    assert {"sm_imgclf.tuning.result", "sm_imgclf.tuning.trial"} <= set(
        problem.split(": ")[1].split(", ")
    )


def test_the_command_line_reports_and_exits_1(
    layers: ModuleType, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert layers.main([str(ROOT / "src")]) == 0
    add_line(tree, "runtime/models.py", "import sm_imgclf.backends.local.backend")
    assert layers.main([str(tree)]) == 1
    assert "runtime.models imports sm_imgclf.backends.local.backend" in capsys.readouterr().out


def test_a_package_circle_fails(layers: ModuleType, tree: Path) -> None:
    # No two modules import each other, but the packages do: debug -> evaluation -> debug.
    add_line(tree, "evaluation/gallery.py", "from sm_imgclf.debug.insights import Insight")
    add_line(tree, "debug/report.py", "from sm_imgclf.evaluation.calibration import ConfidenceBin")
    problems = layers.check(tree)
    assert not any(p.startswith("import circle") for p in problems)
    [package] = [p for p in problems if p.startswith("package circle among: ")]
    assert {"sm_imgclf.debug", "sm_imgclf.evaluation"} <= set(package.split(": ")[1].split(", "))


def test_a_package_importing_its_own_parent_is_no_circle(layers: ModuleType, tree: Path) -> None:
    add_line(tree, "runtime/job/feed.py", "from sm_imgclf.runtime import images")
    assert layers.check(tree) == []


def test_a_model_package_ships_every_module_serving_imports(layers: ModuleType) -> None:
    from sm_imgclf.runtime.package import SERVING_MODULES

    shipped = {
        "sm_imgclf." + m.removesuffix("/__init__").replace("/", ".") for m in SERVING_MODULES
    }
    edges = layers.graph(ROOT / "src")
    missing = {target for source in shipped for target in edges[source]} - shipped
    assert not missing, f"add to SERVING_MODULES: {sorted(missing)}"
    assert not any(
        m.startswith(("sm_imgclf.cli", "sm_imgclf.backends", "sm_imgclf.runtime.job"))
        for m in shipped
    )
