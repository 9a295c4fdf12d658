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
