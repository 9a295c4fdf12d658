"""Rows read from disk a batch at a time give exactly the numbers the same data held in memory gives."""

import numpy as np
import pytest
import torch
from torch import nn

from squeezeflow.config import DatasetParams, SplitParams, TrainParams
from squeezeflow.data import Dataset, Splits, make_splits
from squeezeflow.data.checks import summary_frame
from squeezeflow.models.layers import moments
from squeezeflow.rows import ArrayFile, Lazy, Take, sample, write_npy
from squeezeflow.training import fit, predict_logits


@pytest.fixture
def stored(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 3, 5)).astype(np.float32)
    path = tmp_path / "x.npy"
    write_npy(path, x)
    return x, ArrayFile(path)


def test_a_written_file_is_a_plain_npy_and_reads_back_by_rows(stored):
    x, rows = stored
    np.testing.assert_array_equal(np.load(rows.path), x)
    assert rows.shape == x.shape and rows.dtype == x.dtype and len(rows) == 300 and rows.nbytes == x.nbytes
    np.testing.assert_array_equal(rows[7], x[7])
    np.testing.assert_array_equal(rows[-1], x[-1])
    np.testing.assert_array_equal(rows[10:20], x[10:20])
    np.testing.assert_array_equal(rows[::7], x[::7])
    idx = np.array([299, 3, 4, 5, 3, 100, 0])  # unsorted, repeated, runs of consecutive rows
    np.testing.assert_array_equal(rows[idx], x[idx])
    np.testing.assert_array_equal(rows[5, 2], x[5, 2])
    np.testing.assert_array_equal(rows[2:4, 1], x[2:4, 1])
    np.testing.assert_array_equal(np.asarray(rows), x)
    with pytest.raises(IndexError):
        rows[300]
    with pytest.raises(IndexError):
        rows[np.array([0, 300])]


def test_a_truncated_file_is_refused(stored, tmp_path):
    _, rows = stored
    cut = tmp_path / "cut.npy"
    cut.write_bytes(rows.path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        ArrayFile(cut)


def test_take_and_lazy_read_only_what_is_asked(stored):
    x, rows = stored
    asked = []
    lazy = Lazy(300, (3, 5), np.float32, lambda idx: asked.append(list(idx)) or x[idx])
    part = Take(lazy, np.array([5, 9, 200]))
    np.testing.assert_array_equal(part[1:], x[[9, 200]])
    assert asked == [[9, 200]]
    np.testing.assert_array_equal(sample(rows, 3), x[[0, 150, 299]])


def test_splits_stream_above_the_memory_cap_with_the_same_numbers(stored, tmp_path):
    x, _ = stored
    y = np.arange(300) % 3
    splits = make_splits(Dataset("npz", "f.npz", x, y, 3, None), SplitParams(), 0)
    splits.save(tmp_path / "s")
    held, streamed = Splits.load(tmp_path / "s"), Splits.load(tmp_path / "s", memory_mb=0.001)
    assert isinstance(held.x["train"], np.ndarray) and isinstance(streamed.x["train"], ArrayFile)
    np.testing.assert_array_equal(np.asarray(streamed.x["test"]), held.x["test"])
    frames = summary_frame(streamed.x["val"], streamed.y["val"]), summary_frame(held.x["val"], held.y["val"])
    assert frames[0].equals(frames[1])
    mean, std = moments(streamed.x["train"])
    np.testing.assert_allclose(mean, held.x["train"].astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, held.x["train"].astype(np.float64).std(0), rtol=1e-10)


def test_training_on_rows_from_disk_matches_training_in_memory(stored):
    x, rows = stored
    y = (x[:, 0, 0] > 0).astype(np.int64)
    params = TrainParams(epochs=3, patience=3, batch_size=32)
    models = []
    for data in (x, rows):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(15, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        fit(model, (data, y), (data[:50], y[:50]), params, seed=0, desc="t")
        models.append(model)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    np.testing.assert_array_equal(predict_logits(models[0], x), predict_logits(models[1], rows))


def test_an_image_folder_is_decoded_only_when_its_rows_are_read(tmp_path):
    from PIL import Image

    from squeezeflow.data import load_dataset
    from squeezeflow.errors import SqueezeflowInputError

    for c in ("a", "b"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(tmp_path / "img" / c / f"{i}.png")
    bad = tmp_path / "img" / "b" / "2.png"
    bad.write_bytes(bad.read_bytes()[:45])  # a PNG header, then nothing: only decoding its pixels finds out
    data = load_dataset(DatasetParams(name="image_folder", path=str(tmp_path / "img")))
    np.testing.assert_allclose(data.x[:2], np.stack([np.full((4, 4), 0.0), np.full((4, 4), 40 / 255)]), rtol=1e-6)
    with pytest.raises(SqueezeflowInputError, match="2.png"):  # named when the dataset stage reads it
        np.asarray(data.x)
    bad.write_bytes(b"not a png")  # not an image at all: named before anything is read
    with pytest.raises(SqueezeflowInputError, match="2.png"):
        load_dataset(DatasetParams(name="image_folder", path=str(tmp_path / "img")))
