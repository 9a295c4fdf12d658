"""The user's data as files: a CSV or Parquet table, a folder of images per class."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from squeezeflow.config import DatasetParams
from squeezeflow.data import load_dataset
from squeezeflow.errors import SqueezeflowInputError


def table(tmp_path, suffix: str):
    frame = pd.DataFrame({"size": [1.5, 2.0, 3.25, 4.0, 5.5, 6.0], "colour": ["red", "blue", "red", "green", "blue",
                                                                          "red"],
                          "ok": [True, False, True, True, False, False], "species": ["b", "a", "b", "c", "a", "c"]})
    path = tmp_path / f"t{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_becomes_numbers_with_categories_one_hot_and_labels_sorted(tmp_path, suffix):
    data = load_dataset(DatasetParams(name="table", path=str(table(tmp_path, suffix)), label_column="species"))
    # size, then colour one-hot (blue, green, red), then ok one-hot (False, True)
    assert data.x.shape == (6, 1 + 3 + 2) and data.x.dtype == np.float32
    np.testing.assert_array_equal(data.x[:, 0], [1.5, 2.0, 3.25, 4.0, 5.5, 6.0])
    np.testing.assert_array_equal(data.x[0, 1:4], [0, 0, 1])  # red
    np.testing.assert_array_equal(data.x[1, 4:], [1, 0])  # False
    np.testing.assert_array_equal(data.y, [1, 0, 1, 2, 0, 2])  # a=0, b=1, c=2
    assert data.num_classes == 3


def test_integer_labels_are_kept(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("f,label\n0.5,2\n0.1,0\n0.3,1\n")
    data = load_dataset(DatasetParams(name="table", path=str(path)))
    np.testing.assert_array_equal(data.y, [2, 0, 1])


@pytest.mark.parametrize("content,field,needle", [
    ("f,label\n", "<file>", "no rows"),
    ("label\n1\n0\n", "<file>", "no feature columns"),
    ("f,target\n1,0\n", "dataset.label_column", "no such column"),
])
def test_bad_tables_name_the_file_and_field(tmp_path, content, field, needle):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(SqueezeflowInputError) as err:
        load_dataset(DatasetParams(name="table", path=str(path)))
    assert err.value.field == field and needle in err.value.problem and str(path) in str(err.value)


def images(tmp_path, colour: bool = False, size=(6, 5)):
    root = tmp_path / "imgs"
    for cls, value in (("cat", 40), ("dog", 200)):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            arr = np.full((*size, 3) if colour else size, value + k, dtype=np.uint8)
            if colour:
                arr[..., 2] = 0
            Image.fromarray(arr).save(root / cls / f"{k}.png")
    return root


def test_an_image_folder_is_decoded_resized_and_scaled(tmp_path):
    root = images(tmp_path)
    data = load_dataset(DatasetParams(name="image_folder", path=str(root), image_size=(4, 4)))
    assert data.x.shape == (6, 4, 4) and data.num_classes == 2
    np.testing.assert_array_equal(data.y, [0, 0, 0, 1, 1, 1])  # classes by folder name: cat, dog
    np.testing.assert_allclose(data.x[0], 40 / 255, rtol=1e-6)
    np.testing.assert_allclose(data.x[5], 202 / 255, rtol=1e-6)
    assert load_dataset(DatasetParams(name="image_folder", path=str(root))).x.shape == (6, 6, 5)  # first image's size


def test_colour_images_keep_three_channels_first(tmp_path):
    data = load_dataset(DatasetParams(name="image_folder", path=str(images(tmp_path, colour=True))))
    assert data.x.shape == (6, 3, 6, 5)
    np.testing.assert_allclose(data.x[0, 2], 0.0)


def test_a_folder_without_class_subfolders_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(SqueezeflowInputError, match="one subfolder of images per class"):
        load_dataset(DatasetParams(name="image_folder", path=str(tmp_path / "flat")))


def _data_module(tmp_path, monkeypatch, code: str) -> str:
    name = f"userdata_{abs(hash(code)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_data_function_returning_token_ids_keeps_them_integers(tmp_path, monkeypatch):
    mod = _data_module(tmp_path, monkeypatch, "import numpy as np\n"
                       "def load(n):\n    return np.arange(n * 4).reshape(n, 4) % 7, np.arange(n) % 2\n")
    data = load_dataset(DatasetParams(name="python", factory=f"{mod}:load", kwargs={"n": 6}))
    assert data.x.dtype == np.int64 and data.x.shape == (6, 4) and data.num_classes == 2
    assert data.presplit is None


def test_a_data_function_returning_a_torch_dataset_and_its_own_splits(tmp_path, monkeypatch):
    from squeezeflow.config import SplitParams
    from squeezeflow.data import make_splits

    mod = _data_module(tmp_path, monkeypatch, "import torch\n"
                       "class D(torch.utils.data.Dataset):\n"
                       "    def __init__(self, n, off): self.n, self.off = n, off\n"
                       "    def __len__(self): return self.n\n"
                       "    def __getitem__(self, i):\n"
                       "        return torch.full((3,), float(i + self.off)), torch.tensor(i % 2)\n"
                       "def load():\n    return {'train': D(8, 0), 'val': D(4, 100), 'test': D(2, 200)}\n")
    data = load_dataset(DatasetParams(name="python", factory=f"{mod}:load"))
    splits = make_splits(data, SplitParams(), seed=0)
    assert splits.sizes() == {"train": 8, "val": 4, "test": 2}  # used as given, not re-split
    np.testing.assert_array_equal(splits.x["val"][:, 0], [100, 101, 102, 103])
    assert splits.x["train"].dtype == np.float32


@pytest.mark.parametrize("code,needle", [
    ("def load():\n    return 42\n", "returned int: expected (x, y) arrays"),
    ("def load():\n    raise RuntimeError('no disk')\n", "raised RuntimeError: no disk"),
    ("import numpy as np\ndef load():\n    return np.zeros((4, 2)), np.zeros(3, int)\n", "one label per row"),
])
def test_a_data_function_that_goes_wrong_is_one_error_naming_the_field(tmp_path, monkeypatch, code, needle):
    mod = _data_module(tmp_path, monkeypatch, code)
    with pytest.raises(SqueezeflowInputError) as err:
        load_dataset(DatasetParams(name="python", factory=f"{mod}:load"))
    assert needle in str(err.value) and ("dataset.factory" in str(err.value) or "'y'" in str(err.value))
