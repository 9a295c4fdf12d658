import numpy as np
import pytest

from squeezeflow.config import DatasetParams, SplitParams
from squeezeflow.data import load_dataset, make_splits
from squeezeflow.data.sources import Dataset
from squeezeflow.data.splits import Splits, expected_sizes
from squeezeflow.errors import SqueezeflowInputError


def test_split_is_deterministic_stratified_and_sized_as_configured(tmp_path):
    d = load_dataset(DatasetParams(name="digits"))
    params = SplitParams(val=0.15, test=0.2)
    a, b = make_splits(d, params, seed=3), make_splits(d, params, seed=3)
    assert all(np.array_equal(a.y[s], b.y[s]) for s in ("train", "val", "test"))
    assert a.sizes() == expected_sizes(len(d.y), params) and sum(a.sizes().values()) == len(d.y)
    for s in ("train", "val", "test"):
        assert set(np.unique(a.y[s])) == set(range(10))
    c = make_splits(d, params, seed=4)
    assert not np.array_equal(a.y["train"], c.y["train"])
    a.save(tmp_path)
    loaded = Splits.load(tmp_path)
    assert np.array_equal(loaded.x["test"], a.x["test"])


def test_too_few_samples_of_a_class_is_a_clear_error():
    x = np.zeros((12, 2), np.float32)
    y = np.array([0] * 6 + [1] * 5 + [2])
    with pytest.raises(SqueezeflowInputError, match="label 2 has 1 sample"):
        make_splits(Dataset("npz", "f.npz", x, y, 3, None), SplitParams(), 0)
