"""Great Expectations 1.x checks on the dataset splits, run before any training.

Each split becomes a per-row summary table (min, max, non-finite count, value count, label); the suite
checks finiteness, the value range, label range, class coverage, shapes and split sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from squeezeflow.data.splits import SPLITS, Splits

# Which user-facing field each summary column speaks for.
FIELD_OF = {"row_min": "x", "row_max": "x", "n_nonfinite": "x", "n_values": "x", "y": "y", None: "split"}


@dataclass(frozen=True)
class DataCheckSpec:
    source: str
    num_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] | None
    split_sizes: dict[str, int]


@dataclass
class DataCheckReport:
    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0

    def message(self) -> str:
        return "; ".join(f["message"] for f in self.failures) or "all data expectations passed"


def summary_frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    flat = x.reshape(len(x), -1).astype(np.float64)
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore"):
        # NaN-propagating on purpose: a row holding NaN shows up as null (caught by the finiteness check).
        row_min, row_max = flat.min(axis=1) if flat.size else [], flat.max(axis=1) if flat.size else []
    return pd.DataFrame(
        {
            "row_min": row_min,
            "row_max": row_max,
            "n_nonfinite": (~finite).sum(axis=1),
            "n_values": np.full(len(x), flat.shape[1]),
            "y": y.astype(np.int64),
        }
    )


def _suite(spec: DataCheckSpec, split: str):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"squeezeflow-{split}")
    add = suite.add_expectation
    add(gxe.ExpectColumnValuesToBeInSet(column="n_nonfinite", value_set=[0], meta={"why": "values must be finite (no NaN or inf)"}))
    if spec.value_range is not None:
        lo, hi = spec.value_range
        add(gxe.ExpectColumnValuesToBeBetween(column="row_min", min_value=lo, meta={"why": f"values must be >= {lo}"}))
        add(gxe.ExpectColumnValuesToBeBetween(column="row_max", max_value=hi, meta={"why": f"values must be <= {hi}"}))
    add(gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0, max_value=spec.num_classes - 1,
                                          meta={"why": f"labels must be in 0..{spec.num_classes - 1}"}))
    add(gxe.ExpectColumnDistinctValuesToContainSet(column="y", value_set=list(range(spec.num_classes)),
                                                   meta={"why": f"every class 0..{spec.num_classes - 1} must be present"}))
    n_values = int(np.prod(spec.input_shape))
    add(gxe.ExpectColumnValuesToBeInSet(column="n_values", value_set=[n_values],
                                        meta={"why": f"every sample must have shape {spec.input_shape}"}))
    add(gxe.ExpectTableRowCountToEqual(value=spec.split_sizes[split],
                                       meta={"why": f"split must have {spec.split_sizes[split]} rows as configured"}))
    return suite


def _first_nonfinite(x: np.ndarray) -> str:
    bad = x[~np.isfinite(x)]
    return str(bad.flat[0]) if bad.size else "nan"


def _failure(spec: DataCheckSpec, split: str, res: Any, x: np.ndarray) -> dict[str, Any]:
    cfg = res.expectation_config
    column = cfg.kwargs.get("column")
    detail = res.result or {}
    if column == "n_nonfinite":
        value = _first_nonfinite(x)  # the summary holds counts; report the offending value itself
    elif detail.get("partial_unexpected_list"):
        value = detail["partial_unexpected_list"][0]
    else:
        value = detail.get("observed_value", detail.get("details"))
    if isinstance(value, float) and np.isnan(value):
        value = "nan"
    count = detail.get("unexpected_count")
    why = (cfg.meta or {}).get("why", cfg.type)
    rows = f" ({count} rows)" if count else ""
    fld = FIELD_OF.get(column, "x")
    if column == "y" and cfg.type == "expect_column_distinct_values_to_contain_set":
        missing = sorted(set(range(spec.num_classes)) - set(value or []))
        value = f"missing classes {missing}"
    return {
        "split": split,
        "expectation": cfg.type,
        "field": fld,
        "value": str(value),
        "unexpected_count": count,
        "message": f"{spec.source}: field '{fld}' = {value!s}: {split} split: {why}{rows}",
    }


def check_splits(splits: Splits, spec: DataCheckSpec) -> DataCheckReport:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # heavy (seconds): imported only when checking
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = ctx.data_sources.add_pandas("squeezeflow").add_dataframe_asset("splits").add_batch_definition_whole_dataframe("all")
    report = DataCheckReport(passed=True)
    for split in SPLITS:
        frame = summary_frame(splits.x[split], splits.y[split])
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(_suite(spec, split))
        report.evaluated += len(result.results)
        for res in result.results:
            if not res.success:
                report.passed = False
                report.failures.append(_failure(spec, split, res, splits.x[split]))
    return report
