import pytest
import yaml

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.targets import load_target, load_targets, select_targets
from tests.conftest import write_target


def test_shipped_profiles_load(project_root):
    targets = load_targets(project_root / "device_targets")
    assert set(targets) == {p.stem for p in (project_root / "device_targets").glob("*.yaml")}  # every one of them
    assert {"cpu-fp32", "cpu-int8", "cpu-openvino-int8", "gpu-tensorrt-fp16"} <= set(targets)
    assert targets["cpu-int8"].build.builder == "ort-int8-qdq"
    assert {t.runtime for t in targets.values()} == {"onnxruntime", "openvino", "tensorrt"}


def _target(tmp_path, builder: str, **keys):
    path = write_target(tmp_path, "edge", builder=builder)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **keys}))
    return path


@pytest.mark.parametrize("runtime, builder, accepted", [
    ("openvino", "ort-fp32", "builders whose output openvino runs: openvino, ort-int8-qdq"),  # ORT's own graph
    ("onnxruntime", "tensorrt", "runtimes that run tensorrt-plan: tensorrt"),
    ("tensorrt", "ort-int8-qdq", "builders whose output tensorrt runs: tensorrt"),
    ("openvino", "tensorrt", "runtimes that run tensorrt-plan: tensorrt"),
])
def test_a_runtime_that_cannot_run_its_builders_output_names_file_field_and_value(tmp_path, runtime, builder,
                                                                                   accepted):
    path = _target(tmp_path, builder, runtime=runtime)
    with pytest.raises(SqueezeflowInputError) as err:
        load_target(path)
    assert err.value.source == str(path) and err.value.field == "build.builder" and err.value.value == builder
    msg = str(err.value)
    assert f"field 'build.builder' = '{builder}'" in msg and f"runtime '{runtime}' does not run" in msg
    assert accepted in msg


def test_a_builder_the_default_runtime_cannot_run_names_the_runtime_field(tmp_path):
    path = _target(tmp_path, "tensorrt")  # no `runtime:` line: onnxruntime, which does not run a TensorRT engine
    with pytest.raises(SqueezeflowInputError) as err:
        load_target(path)
    assert err.value.source == str(path) and err.value.field == "runtime" and err.value.value == "onnxruntime"
    assert "not set" in err.value.problem and "set runtime to one that runs tensorrt-plan: tensorrt" in str(err.value)


@pytest.mark.parametrize("runtime, builder", [("openvino", "ort-int8-qdq"), ("onnxruntime", "openvino"),
                                              ("tensorrt", "tensorrt"), ("onnxruntime", "ort-fp32")])
def test_a_runtime_takes_any_builder_writing_a_format_it_runs(tmp_path, runtime, builder):
    profile = load_target(_target(tmp_path, builder, runtime=runtime))
    assert profile.runtime == runtime and profile.build.builder == builder


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
