"""Great Expectations 1.x checks on the dataset splits, run before any training.

Each split, read a chunk at a time (every sample, never the whole split at once), becomes a per-row summary table
(finite min and max, non-finite count, value count, label, row hash, duplicate-of-train flag, class count); the
suite checks finiteness, the value range (given, a fixed magnitude cap, and the range learned from the train split),
label range, class coverage and balance, that train is not constant, duplicates of train rows in val/test, shapes
and split sizes.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from squeezeflow.data.splits import SPLITS, Splits
from squeezeflow.rows import chunks

# Which user-facing field each summary column speaks for.
FIELD_OF = {"row_min": "x", "row_max": "x", "n_nonfinite": "x", "n_values": "x", "row_key": "x", "in_train": "x",
            "y": "y", "class_count": "y", None: "split"}


@dataclass(frozen=True)
class DataCheckSpec:
    source: str
    num_classes: int
    input_shape: tuple[int, ...]
    value_range: tuple[float, float] | None
    split_sizes: dict[str, int]
    # Bounds that hold without the user giving a value range. Beyond ~1e6, float32 training (no input scaling:
    # activations and gradients blow up) and int8 calibration (one scale over a huge range) break down.
    max_abs: float = 1e6
    # val/test values must lie within train's [min, max] widened by this many spans each side: generous, so only a
    # split on another scale (e.g. raw 0..255 against 0..1) trips it, never the normal spread of a sample.
    range_slack: float = 2.0
    min_per_class: int = 2  # train samples per class: fewer and the class is unlearnable
    # A few exact duplicates occur in real data; beyond this fraction of a split, its score measures memory.
    max_duplicate_fraction: float = 0.1


@dataclass
class DataCheckReport:
    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0

    def message(self) -> str:
        return "; ".join(f["message"] for f in self.failures) or "all data expectations passed"


def _row_keys(flat: np.ndarray) -> np.ndarray:
    # + 0.0 turns -0.0 into 0.0, so equal rows hash equal; 64-bit hashes: collisions are negligible. One hash of
    # each row's bytes: pandas' per-column hashing takes minutes on rows of 50,000 pixels.
    import hashlib

    rows = np.ascontiguousarray(flat + 0.0)
    digests = b"".join(hashlib.blake2b(r.tobytes(), digest_size=8).digest() for r in rows)
    return np.frombuffer(digests, dtype=np.int64).copy() if len(rows) else np.zeros(0, dtype=np.int64)


def _row_stats(part: np.ndarray) -> dict[str, np.ndarray]:
    flat = part.reshape(len(part), -1).astype(np.float64)
    finite = np.isfinite(flat)
    row_min = row_max = np.full(len(part), np.nan)
    if flat.shape[1]:
        # Over finite values only: NaN/inf are the finiteness check's to report (once); a row with no finite value
        # shows up as null, which the range checks skip.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fin = np.where(finite, flat, np.nan)
            row_min, row_max = np.nanmin(fin, axis=1), np.nanmax(fin, axis=1)
    return {"row_min": row_min, "row_max": row_max, "n_nonfinite": (~finite).sum(axis=1),
            "n_values": np.full(len(part), flat.shape[1]), "row_key": _row_keys(flat)}


def summary_frame(x: np.ndarray, y: np.ndarray, train_keys: np.ndarray | None = None) -> pd.DataFrame:
    """One row per sample, over every sample: `x` (an array or rows on disk) is summarized a chunk at a time, so
    the checks see the full data without holding it. `train_keys`: the train split's row hashes, to flag exact
    duplicates of train rows."""
    parts = [_row_stats(part) for part in chunks(x)] or [_row_stats(np.zeros((0, *x.shape[1:])))]
    stats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    labels = y.astype(np.int64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keys = stats["row_key"]
    return pd.DataFrame(
        {
            "row_min": stats["row_min"],
            "row_max": stats["row_max"],
            "n_nonfinite": stats["n_nonfinite"],
            "n_values": stats["n_values"],
            "y": labels,
            "class_count": counts[inverse.reshape(-1)] if len(labels) else np.zeros(0, dtype=np.int64),
            "row_key": keys,
            "in_train": (np.isin(keys, train_keys).astype(np.int64) if train_keys is not None
                         else np.zeros(len(x), np.int64)),
        }
    )


def _suite(spec: DataCheckSpec, split: str, train_range: tuple[float, float] | None = None):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"squeezeflow-{split}")
    add = suite.add_expectation
    add(gxe.ExpectColumnValuesToBeInSet(column="n_nonfinite", value_set=[0],
                                        meta={"why": "values must be finite (no NaN or inf)"}))
    if spec.value_range is not None:
        lo, hi = spec.value_range
        add(gxe.ExpectColumnValuesToBeBetween(column="row_min", min_value=lo, meta={"why": f"values must be >= {lo}"}))
        add(gxe.ExpectColumnValuesToBeBetween(column="row_max", max_value=hi, meta={"why": f"values must be <= {hi}"}))
    cap = (f"|values| must be <= {spec.max_abs:g}: float32 training and int8 calibration break down at such "
           "magnitudes; rescale the data (e.g. standardize it)")
    add(gxe.ExpectColumnValuesToBeBetween(column="row_min", min_value=-spec.max_abs, meta={"why": cap}))
    add(gxe.ExpectColumnValuesToBeBetween(column="row_max", max_value=spec.max_abs, meta={"why": cap}))
    if split != "train" and train_range is not None:
        lo, hi = train_range
        slack = spec.range_slack * (hi - lo)
        why = (f"values must lie within the train split's range [{lo:.4g}, {hi:.4g}] widened by {spec.range_slack:g} "
               f"spans each side ([{lo - slack:.4g}, {hi + slack:.4g}]): is this split on another scale than train?")
        add(gxe.ExpectColumnValuesToBeBetween(column="row_min", min_value=lo - slack, meta={"why": why}))
        add(gxe.ExpectColumnValuesToBeBetween(column="row_max", max_value=hi + slack, meta={"why": why}))
    add(gxe.ExpectColumnValuesToBeBetween(column="y", min_value=0, max_value=spec.num_classes - 1,
                                          meta={"why": f"labels must be in 0..{spec.num_classes - 1}"}))
    add(gxe.ExpectColumnDistinctValuesToContainSet(column="y", value_set=list(range(spec.num_classes)),
                                                   meta={"why": f"every class 0..{spec.num_classes - 1} "
                                                                "must be present"}))
    if split == "train":
        add(gxe.ExpectColumnValuesToBeBetween(column="class_count", min_value=spec.min_per_class,
                                              meta={"why": f"every class needs at least {spec.min_per_class} "
                                                           "train samples"}))
        # All rows identical <=> every feature constant: nothing to learn. Some constant features are normal.
        add(gxe.ExpectColumnUniqueValueCountToBeBetween(column="row_key", min_value=2,
                                                        meta={"why": "every feature is constant across the "
                                                                     "train split: no information to learn from"}))
    else:
        frac = spec.max_duplicate_fraction
        add(gxe.ExpectColumnValuesToBeInSet(column="in_train", value_set=[0], mostly=1 - frac,
                                            meta={"why": f"at most {frac:.0%} of rows may be exact duplicates "
                                                         "of train rows (leakage: the score would measure memory, "
                                                         "not learning)"}))
    n_values = int(np.prod(spec.input_shape))
    add(gxe.ExpectColumnValuesToBeInSet(column="n_values", value_set=[n_values],
                                        meta={"why": f"every sample must have shape {spec.input_shape}"}))
    add(gxe.ExpectTableRowCountToEqual(value=spec.split_sizes[split],
                                       meta={"why": f"split must have {spec.split_sizes[split]} rows as configured"}))
    return suite


def _first_nonfinite(x: np.ndarray) -> str:
    for part in chunks(x):
        bad = part[~np.isfinite(part)]
        if bad.size:
            return str(bad.flat[0])
    return "nan"


def _failure(spec: DataCheckSpec, split: str, res: Any, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
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
    # Where the summary column holds a count or a flag, report what it means instead.
    if column == "y" and cfg.type == "expect_column_distinct_values_to_contain_set":
        missing = sorted(set(range(spec.num_classes)) - set(value or []))
        value = f"missing classes {missing}"
    elif column == "class_count":
        labels, counts = np.unique(y, return_counts=True)
        value = ", ".join(f"class {c}: {n} sample(s)" for c, n in zip(labels, counts, strict=True)
                          if n < spec.min_per_class)
    elif column == "row_key":
        value = f"{value} distinct row(s)"
    elif column == "in_train":
        value = f"{detail.get('unexpected_percent', float('nan')):.1f}% of rows duplicate train rows"
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
    batch_def = (ctx.data_sources.add_pandas("squeezeflow").add_dataframe_asset("splits")
                 .add_batch_definition_whole_dataframe("all"))
    report = DataCheckReport(passed=True)
    # The bounds val/test are held to are learned from train (SPLITS starts with it).
    train = summary_frame(splits.x["train"], splits.y["train"])
    lo, hi = train["row_min"].min(), train["row_max"].max()  # NaN-skipping; NaN when train has no finite value
    train_range = (float(lo), float(hi)) if np.isfinite(lo) and np.isfinite(hi) else None
    for split in SPLITS:
        frame = train if split == "train" else summary_frame(splits.x[split], splits.y[split],
                                                             train["row_key"].to_numpy())
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(_suite(spec, split, train_range))
        report.evaluated += len(result.results)
        for res in result.results:
            if not res.success:
                report.passed = False
                report.failures.append(_failure(spec, split, res, splits.x[split], splits.y[split]))
    return report
