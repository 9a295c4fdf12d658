import numpy as np
import pytest

from squeezeflow.config import DatasetParams
from squeezeflow.data import load_dataset
from squeezeflow.errors import SqueezeflowInputError


def test_digits_is_built_in_with_its_image_layout():
    d = load_dataset(DatasetParams(name="digits"))
    assert d.x.shape == (1797, 8, 8) and d.x.dtype == np.float32
    assert d.num_classes == 10 and 0.0 <= d.x.min() and d.x.max() <= 1.0


def test_mnist1d_is_generated_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # get_dataset() would write a pickle here; make_dataset must not
    d = load_dataset(DatasetParams(name="mnist1d"))
    assert d.x.shape == (5000, 40) and set(np.unique(d.y)) == set(range(10))
    assert list(tmp_path.iterdir()) == []


def test_npz_keeps_the_users_layout(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.random.rand(30, 3, 4).astype(np.float64), y=np.arange(30) % 3)
    d = load_dataset(DatasetParams(name="npz", path=str(path)))
    assert d.x.shape == (30, 3, 4) and d.x.dtype == np.float32 and d.num_classes == 3


def test_npz_integers_are_ids_and_bytes_are_pixels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.arange(60, dtype=np.int32).reshape(30, 2), y=np.arange(30) % 3)
    assert load_dataset(DatasetParams(name="npz", path=str(path))).x.dtype == np.int64  # token ids, embedded
    np.savez(path, x=np.full((30, 2), 255, np.uint8), y=np.arange(30) % 3)
    d = load_dataset(DatasetParams(name="npz", path=str(path)))
    assert d.x.dtype == np.float32 and np.asarray(d.x).max() == 255.0  # uint8 images: intensities, as floats


@pytest.mark.parametrize("save, order, streamed", [
    (np.savez, "C", True), (np.savez_compressed, "C", False), (np.savez, "F", False)])
def test_npz_x_is_read_in_place_when_savez_stored_it(tmp_path, save, order, streamed):
    """An uncompressed, C-ordered x is read from the file a batch at a time (data larger than memory); a
    compressed or Fortran-ordered one is loaded whole. Same rows either way, converted as the model takes them."""
    path = tmp_path / "d.npz"
    x = np.asarray(np.random.default_rng(0).random((50, 3, 4)), order=order)
    save(path, x=x, y=np.arange(50) % 5)
    d = load_dataset(DatasetParams(name="npz", path=str(path)))
    assert isinstance(d.x, np.ndarray) is not streamed
    assert d.x.dtype == np.float32 and d.x.shape == (50, 3, 4)
    idx = np.array([7, 3, 3, 49])
    np.testing.assert_array_equal(np.asarray(d.x[idx]), x[idx].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(d.x), x.astype(np.float32))


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays, field, value", [
    (dict(y=np.zeros(4, int)), "x", "None"),
    (dict(x=np.zeros((4, 2), np.complex64), y=np.zeros(4, int)), "x", "complex64"),
    (dict(x=np.zeros(4), y=np.zeros(4, int)), "x", "shape (4,)"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(4)), "y", "float64"),
    (dict(x=np.zeros((4, 2)), y=np.zeros(3, int)), "y", "shape (3,)"),
])
def test_malformed_npz_names_file_field_and_value(tmp_path, arrays, field, value):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(SqueezeflowInputError) as err:
        load_dataset(DatasetParams(name="npz", path=str(path)))
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value) and value in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(SqueezeflowInputError, match="not a .npz file") as err:
        load_dataset(DatasetParams(name="npz", path=str(garbage)))
    assert "pickled" not in str(err.value)  # numpy's guess for any non-zip file; misleading
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # a zip header, then nothing readable
    with pytest.raises(SqueezeflowInputError, match="not a readable .npz"):
        load_dataset(DatasetParams(name="npz", path=str(tmp_path / "cut.npz")))
    with pytest.raises(SqueezeflowInputError, match="no such file"):
        load_dataset(DatasetParams(name="npz", path=str(tmp_path / "absent.npz")))


def test_unknown_dataset_name():
    with pytest.raises(SqueezeflowInputError, match="dataset.name.*imagenet"):
        load_dataset(DatasetParams(name="imagenet"))


@pytest.mark.parametrize("bad,allowed", [(-1, "0..C-1"), (10, "0..9")])
def test_a_label_out_of_range_names_its_row_and_value(tmp_path, bad, allowed):
    y = np.repeat(np.arange(10), 5)
    y[7] = bad
    path = tmp_path / "labels.npz"
    np.savez(path, x=np.zeros((50, 3), np.float32), y=y)
    with pytest.raises(SqueezeflowInputError, match=f"field 'y' = {bad}: labels must be in {allowed}.*row 7"):
        load_dataset(DatasetParams(name="npz", path=str(path), num_classes=10 if bad == 10 else None))
