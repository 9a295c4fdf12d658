import pytest

from squeezeflow.config import Params, apply_overrides, load_params, parse_override
from squeezeflow.errors import SqueezeflowInputError


def test_defaults_round_trip_through_yaml(tmp_path):
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(Params().model_dump(mode="json")))
    assert load_params(path) == Params()


def test_unknown_key_names_file_field_and_value(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("teacher:\n  hiden: [10]\n")
    with pytest.raises(SqueezeflowInputError) as err:
        load_params(path)
    assert str(path) in str(err.value) and "teacher.hiden" in str(err.value) and "[10]" in str(err.value)


def test_out_of_range_value_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("split:\n  val: 1.5\n")
    with pytest.raises(SqueezeflowInputError, match=r"split\.val.*1\.5"):
        load_params(path)


def test_overrides_set_nested_keys_and_revalidate():
    p = apply_overrides(Params(), dict([parse_override("teacher.train.epochs=3"),
                                        parse_override("dataset.name=mnist1d")]))
    assert p.teacher.train.epochs == 3 and p.dataset.name == "mnist1d"
    with pytest.raises(SqueezeflowInputError, match="teacher.nope"):
        apply_overrides(Params(), {"teacher.nope": 1})
    with pytest.raises(SqueezeflowInputError, match="seed"):
        apply_overrides(Params(), {"seed": -1})


def test_npz_dataset_needs_a_path():
    with pytest.raises(SqueezeflowInputError, match="dataset.path"):
        apply_overrides(Params(), {"dataset.name": "npz"})
