"""Runtime plugins (squeezeflow/runtimes/base.py): each runtime declared once, with the builders it brings, and every
pairing of a runtime with a builder decided by the format the builder writes."""

import subprocess
import sys
from typing import Literal

import pytest

from squeezeflow.runtimes import RUNTIMES, Builder, BuilderConfig, Runtime, load_builders, load_runtimes
from squeezeflow.runtimes.base import register_runtime
from squeezeflow.runtimes.engines import ENGINES, companion_files, engine_config, engine_unavailable


def test_the_shipped_runtimes_and_builders_are_registered():
    assert sorted(load_runtimes()) == ["onnxruntime", "openvino", "tensorrt"]
    assert sorted(load_builders()) == ["openvino", "ort-fp32", "ort-int8-qdq", "tensorrt"]
    assert ENGINES is RUNTIMES  # the former name of the registry


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "tensorrt"])
def test_each_runtime_has_a_builder_that_writes_what_it_runs(name):
    runtime = load_runtimes()[name]
    assert runtime.builders, f"{name} brings no builder"
    assert all(b.produces in runtime.runs for b in runtime.builders)  # its own builders
    assert all(load_builders()[b.name] is b for b in runtime.builders)  # registered with it


def test_every_builder_writes_a_format_some_runtime_runs():
    for name, builder in load_builders().items():
        assert any(builder.produces in r.runs for r in load_runtimes().values()), name


def test_a_runtime_bringing_a_builder_it_cannot_run_is_refused():
    class PlanConfig(BuilderConfig):
        builder: Literal["plan-only"] = "plan-only"

    class PlanOnly(Builder):
        name, Config, produces = "plan-only", PlanConfig, "some-plan"

    class OnnxOnly(Runtime):
        name, runs, builders = "onnx-only", frozenset({"onnx"}), (PlanOnly,)

    with pytest.raises(TypeError, match="onnx-only brings builder PlanOnly, whose output \\(some-plan\\) it does not"):
        register_runtime(OnnxOnly)
    assert "onnx-only" not in load_runtimes() and "plan-only" not in load_builders()  # nothing half-registered


def test_a_builder_without_a_format_is_refused():
    class Bare(Builder):
        name, Config = "bare", BuilderConfig

    class WithBare(Runtime):
        name, runs, builders = "with-bare", frozenset({"onnx"}), (Bare,)

    with pytest.raises(TypeError, match="Bare"):
        register_runtime(WithBare)
    assert "with-bare" not in load_runtimes() and "bare" not in load_builders()


def test_what_the_agent_and_the_registry_read_comes_from_the_plugin(tmp_path):
    runtimes = load_runtimes()
    assert runtimes["tensorrt"].companions == (".plan",) and runtimes["onnxruntime"].companions == ()
    assert "session.disable_quant_qdq" in runtimes["onnxruntime"].safe_options
    assert "CACHE_DIR" not in runtimes["openvino"].safe_options  # a path: never from a client
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    (tmp_path / "model.plan").write_bytes(b"x")
    assert companion_files("tensorrt", model) == [tmp_path / "model.plan"] and companion_files("openvino", model) == []
    assert engine_config("openvino", 2)["INFERENCE_NUM_THREADS"] == 2
    assert engine_config("onnxruntime")["runtime"] == "onnxruntime"
    assert engine_unavailable("onnxruntime") is None and engine_unavailable("tflite") == "unknown runtime 'tflite'"


def test_the_measuring_process_and_the_agent_load_every_plugin_without_heavy_imports():
    code = ("import sys\n"
            "import squeezeflow.runtimes.worker, squeezeflow.runtimes.agent, squeezeflow.runtimes.measure\n"
            "from squeezeflow.runtimes.engines import load_runtimes\n"
            "from squeezeflow.runtimes.base import load_builders\n"
            "assert sorted(load_runtimes()) == ['onnxruntime', 'openvino', 'tensorrt'] and load_builders()\n"
            "heavy = ['torch', 'onnx', 'onnxruntime', 'onnxruntime.quantization', 'openvino', 'tensorrt',\n"
            "         'squeezeflow.export']\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
