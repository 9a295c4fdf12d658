import pytest
import yaml

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.targets import load_target, load_targets, select_targets
from tests.conftest import write_target


def test_shipped_profiles_load(project_root):
    targets = load_targets(project_root / "device_targets")
    assert {"cpu-fp32", "cpu-int8"} <= set(targets)
    assert targets["cpu-int8"].build.builder == "ort-int8-qdq"


@pytest.mark.parametrize("mutate, field, value", [
    (lambda d: d["budgets"].update(max_latency_p95_ms_typo=1), "budgets.max_latency_p95_ms_typo", "1"),
    (lambda d: d["measure"].update(threads=0), "measure.threads", "0"),
    (lambda d: d["build"].update(builder="tensorrt-fp99"), "build.builder", "tensorrt-fp99"),
    # each builder owns its options: an int8 option on an fp32 target, or the reverse, is an error, not ignored
    (lambda d: d["build"].update(calibration_method="entropy"), "build.calibration_method", "entropy"),
    (lambda d: d["build"].update(builder="ort-int8-qdq", optimization_level="all"), "build.optimization_level", "all"),
    (lambda d: d["build"].update(builder="ort-int8-qdq", calibration_samples=0), "build.calibration_samples", "0"),
    (lambda d: d.update(name="other"), "name", "other"),
])
def test_bad_profile_names_file_field_and_value(tmp_path, mutate, field, value):
    path = write_target(tmp_path, "edge")
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SqueezeflowInputError) as err:
        load_target(path)
    msg = str(err.value)
    assert str(path) in msg and field in msg and value in msg


def test_a_target_keeps_its_builders_options_and_writes_them_back(tmp_path):
    path = write_target(tmp_path, "edge", builder="ort-int8-qdq")
    data = yaml.safe_load(path.read_text())
    data["build"].update(calibration_samples=77, per_channel=False)
    path.write_text(yaml.safe_dump(data))
    profile = load_target(path)
    assert type(profile.build).__name__ == "OrtInt8QdqConfig" and profile.build.calibration_samples == 77
    dumped = profile.model_dump(mode="json")["build"]  # what .squeezeflow/targets.yaml records for DVC
    assert dumped["calibration_samples"] == 77 and dumped["per_channel"] is False and "max_val_accuracy_drop" in dumped


def test_unknown_target_name_is_rejected(tmp_path):
    write_target(tmp_path, "cpu-fp32")
    with pytest.raises(SqueezeflowInputError, match="'targets'.*gpu-x"):
        select_targets(load_targets(tmp_path), ["gpu-x"], "--target")


def test_an_option_of_another_builder_says_which_options_this_one_takes(tmp_path):
    path = write_target(tmp_path, "edge")
    data = yaml.safe_load(path.read_text())
    data["build"]["per_channel"] = False
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SqueezeflowInputError) as err:
        load_target(path)
    assert err.value.field == "build.per_channel"
    assert err.value.problem == "the ort-fp32 builder does not take this option; it takes: optimization_level"
