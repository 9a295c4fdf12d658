from dataclasses import replace

import numpy as np
import pytest

from squeezeflow.config import DatasetParams, SplitParams
from squeezeflow.data import load_dataset, make_splits
from squeezeflow.data.checks import DataCheckSpec, check_splits
from squeezeflow.data.splits import expected_sizes


@pytest.fixture(scope="module")
def clean():
    d = load_dataset(DatasetParams(name="digits"))
    splits = make_splits(d, SplitParams(), 0)
    spec = DataCheckSpec("digits.npz", 10, (8, 8), (0.0, 1.0), expected_sizes(len(d.y), SplitParams()))
    return splits, spec


def test_clean_data_passes(clean):
    report = check_splits(*clean)
    assert report.passed and report.failures == [] and report.evaluated >= 18


def test_nan_fails_naming_field_and_value(clean):
    splits, spec = clean
    x = splits.x["train"].copy()
    x[5, 2, 3] = np.nan
    report = check_splits(type(splits)({**splits.x, "train": x}, splits.y), spec)
    assert not report.passed
    msg = report.message()
    assert "digits.npz" in msg and "field 'x'" in msg and "nan" in msg and "train split" in msg


def test_label_out_of_range_and_missing_class(clean):
    splits, spec = clean
    y = splits.y["val"].copy()
    y[y == 7] = 12
    report = check_splits(type(splits)(splits.x, {**splits.y, "val": y}), spec)
    fields = {(f["split"], f["field"], f["expectation"]) for f in report.failures}
    assert ("val", "y", "expect_column_values_to_be_between") in fields
    assert ("val", "y", "expect_column_distinct_values_to_contain_set") in fields
    assert any("12" in f["value"] for f in report.failures)


def test_value_range_and_split_size(clean):
    splits, spec = clean
    x = splits.x["test"].copy()
    x[0, 0, 0] = 5.0
    report = check_splits(type(splits)({**splits.x, "test": x[:-1]}, {**splits.y, "test": splits.y["test"][:-1]}), spec)
    kinds = {f["expectation"] for f in report.failures}
    assert "expect_column_values_to_be_between" in kinds and "expect_table_row_count_to_equal" in kinds


# --- bounds learned from the data itself: the user gives no value range (the 1e30-scaled digits case) ---------
@pytest.fixture(scope="module")
def unranged(clean):
    splits, spec = clean
    return splits, replace(spec, value_range=None)


def _with(splits, split, x=None, y=None):
    return type(splits)({**splits.x, split: splits.x[split] if x is None else x},
                        {**splits.y, split: splits.y[split] if y is None else y})


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_real_datasets_pass_with_default_bounds(name):
    d = load_dataset(DatasetParams(name=name))
    splits = make_splits(d, SplitParams(), 0)
    spec = DataCheckSpec(f"{name}.npz", 10, d.x.shape[1:], None, expected_sizes(len(d.y), SplitParams()))
    report = check_splits(splits, spec)
    assert report.passed, report.message()


def test_some_constant_features_pass(unranged):
    splits, spec = unranged
    train = splits.x["train"].reshape(len(splits.x["train"]), -1)
    assert (train.min(0) == train.max(0)).any()  # digits has always-blank corner pixels
    assert check_splits(splits, spec).passed


def test_values_scaled_by_1e30_fail_asking_to_rescale(unranged):
    splits, spec = unranged
    scaled = type(splits)({s: x * np.float32(1e30) for s, x in splits.x.items()}, splits.y)
    report = check_splits(scaled, spec)
    assert not report.passed
    assert {f["split"] for f in report.failures} == {"train", "val", "test"}
    for f in report.failures:
        assert f["field"] == "x" and float(f["value"]) > 1e29
        assert "digits.npz" in f["message"] and "field 'x'" in f["message"] and "rescale" in f["message"]


def test_split_far_outside_the_train_range_fails(unranged):
    splits, spec = unranged
    raw = splits.x["test"] * 255  # test left as raw pixel values 0..255, train scaled to 0..1
    report = check_splits(_with(splits, "test", raw), spec)
    assert [(f["split"], f["field"]) for f in report.failures] == [("test", "x")]
    assert float(report.failures[0]["value"]) > 3  # train spans 0..1: beyond 1 + 2 spans
    assert "train split's range" in report.failures[0]["message"]


def test_modest_shift_stays_within_the_learned_range(unranged):
    splits, spec = unranged
    assert check_splits(_with(splits, "test", splits.x["test"] + 0.5), spec).passed


def test_all_features_constant_fails(unranged):
    splits, spec = unranged
    const = type(splits)({s: np.full_like(x, 0.25) for s, x in splits.x.items()}, splits.y)
    report = check_splits(const, spec)
    train = [f for f in report.failures if f["split"] == "train"]
    assert len(train) == 1 and train[0]["value"] == "1 distinct row(s)"
    assert "every feature is constant" in train[0]["message"]


def test_class_with_one_train_sample_fails(unranged):
    splits, spec = unranged
    y = splits.y["train"]
    keep = np.r_[np.flatnonzero(y != 3), np.flatnonzero(y == 3)[:1]]
    spec = replace(spec, split_sizes={**spec.split_sizes, "train": len(keep)})
    report = check_splits(_with(splits, "train", splits.x["train"][keep], y[keep]), spec)
    assert [(f["split"], f["field"], f["value"]) for f in report.failures] == [("train", "y", "class 3: 1 sample(s)")]
    assert "at least 2 train samples" in report.failures[0]["message"]


def test_heavy_duplication_of_train_rows_fails_a_few_pass(unranged):
    splits, spec = unranged
    test = splits.x["test"].copy()
    test[:10] = splits.x["train"][:10]  # 10 of 360 rows: under 10%, real data has a few
    assert check_splits(_with(splits, "test", test), spec).passed
    test[:100] = splits.x["train"][:100]  # 100 of 360: leakage
    report = check_splits(_with(splits, "test", test), spec)
    assert [(f["split"], f["unexpected_count"]) for f in report.failures] == [("test", 100)]
    assert "27.8% of rows duplicate train rows" in report.failures[0]["message"]
