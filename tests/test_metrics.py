"""The metric lines a job prints are read back exactly, whatever the numbers."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

from sm_imgclf.contracts.metrics import (
    EPOCH_DEFINITION,
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    best_line,
    metric_rows,
    parse_metrics,
)

VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [float("-inf"), float("inf"), float("nan"), -0.0, 1e-300, -1e300]
)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@given(
    st.integers(1, 10_000), st.lists(VALUES, min_size=len(METRIC_NAMES), max_size=len(METRIC_NAMES))
)
def test_every_printed_value_is_read_back(epoch: int, values: list[float]) -> None:
    # The job prints with f"{v:.4f}"; repr covers what other printers would write.
    for show in (lambda v: f"{v:.4f}", repr):
        line = f"epoch={epoch} " + " ".join(
            f"{n}={show(v)}" for n, v in zip(METRIC_NAMES, values, strict=True)
        )
        [row] = parse_metrics([line])
        assert row["epoch"] == epoch
        for name, value in zip(METRIC_NAMES, values, strict=True):
            assert same(row[name], float(show(value))), (line, name)


def test_the_service_regexes_read_what_the_local_parser_reads() -> None:
    line = "epoch=3 train:loss=-inf train:accuracy=0.5000 valid:loss=nan valid:accuracy=1e-05"
    for definition in METRIC_DEFINITIONS:
        found = re.search(definition["Regex"], line)
        assert found is not None or definition["Name"].startswith("test:")
    assert re.search(EPOCH_DEFINITION["Regex"], line).group(1) == "3"  # type: ignore[union-attr]
    assert re.search(EPOCH_DEFINITION["Regex"], "best_epoch=2 valid:accuracy=0.9") is None


def test_the_final_row_merges_the_best_epoch_and_the_test_metrics() -> None:
    best = best_line(1, {"valid:accuracy": 0.6, "valid:loss": -math.inf, "epoch": 1})
    assert best == "best_epoch=1 valid.accuracy=0.6000 valid.loss=-inf"
    rows = metric_rows(
        [
            "epoch=1 valid:accuracy=0.5000",
            "epoch=1 valid:accuracy=0.6000",
            best,
            "test test:accuracy=0.7000",
        ]
    )
    assert rows == [
        {"epoch": 1, "valid:accuracy": 0.6},
        {"epoch": None, "valid:accuracy": 0.6, "valid:loss": -math.inf, "test:accuracy": 0.7},
    ]


def test_the_service_counts_one_report_per_epoch() -> None:
    # The best-epoch line repeats the objective; the metric definitions must not see it.
    best = best_line(2, {"train:loss": 0.1, "valid:accuracy": 0.9})
    assert not any(re.search(d["Regex"], best) for d in (*METRIC_DEFINITIONS, EPOCH_DEFINITION))
