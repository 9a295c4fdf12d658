"""What DVC sees of the user's files: the model's factory package and checkpoint, the data, by content."""

from squeezeflow.config import Params
from squeezeflow.versioning.resolved import model_fingerprint


def test_the_model_fingerprint_follows_every_source_file_of_the_factorys_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "blocks.py").write_text("WIDTH = 8\n")
    (pkg / "models.py").write_text("from fpkg.blocks import WIDTH\n\ndef build(num_classes):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    params = Params.model_validate({"teacher": {"source": {"kind": "python", "factory": "fpkg.models:build",
                                                           "kwargs": {"width": 4}}}})
    first = model_fingerprint(params)
    assert first["factory"] == "fpkg.models:build" and first["kwargs"] == {"width": 4}
    assert first["factory_file"].endswith("fpkg/models.py")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "blocks.cpython-311.pyc").write_bytes(b"compiled")  # not a source: no change
    assert model_fingerprint(params) == first
    (pkg / "blocks.py").write_text("WIDTH = 16\n")  # a module the factory's module imports
    second = model_fingerprint(params)
    assert second["package_sha256"] != first["package_sha256"]
    assert second["factory_sha256"] == first["factory_sha256"]  # models.py itself did not change
