"""Atomic outputs under a real SIGKILL: a complete stage output exists at every moment, and recovery keeps it."""

import os
import signal
import subprocess
import sys

import pytest

from squeezeflow.runlock import remove_temp_files

SWAP = """
import sys
from pathlib import Path
from squeezeflow.io import atomic_dir
with atomic_dir(Path(sys.argv[1]) / "stage") as out:
    (out / "model.bin").write_text("new")
"""


@pytest.mark.parametrize("fault, survivor", [("stage-aside", "old"), ("stage-swapped", "new"), ("", "new")])
def test_a_kill_while_swapping_an_output_in_leaves_a_complete_one(tmp_path, fault, survivor):
    artifacts = tmp_path / "artifacts"
    (artifacts / "stage").mkdir(parents=True)
    (artifacts / "stage" / "model.bin").write_text("old")
    env = {**os.environ, "SQUEEZEFLOW_FAULT": f"{fault}@stage" if fault else ""}
    proc = subprocess.run([sys.executable, "-c", SWAP, str(artifacts)], env=env, timeout=60)
    assert proc.returncode == (-signal.SIGKILL if fault else 0)
    if fault == "stage-aside":
        assert not (artifacts / "stage").exists()  # the moment a kill finds: the old output aside, not deleted
    notes = remove_temp_files(tmp_path, artifacts, tmp_path / "state")
    assert (artifacts / "stage" / "model.bin").read_text() == survivor
    assert sorted(p.name for p in artifacts.iterdir()) == ["stage"]  # nothing half-written left
    assert bool(notes) == bool(fault)


def test_batched_predictions_fill_one_array_releasing_each_output_before_the_next_batch():
    import weakref

    import numpy as np

    from squeezeflow.io import predict_batches

    x = np.arange(1000 * 3, dtype=np.float32).reshape(1000, 3)
    outputs: list[weakref.ref] = []

    class Logits(np.ndarray):  # an ndarray that takes weak references: what a torch output's .numpy() holds
        pass

    def predict(batch):
        assert all(ref() is None for ref in outputs), "an earlier batch's output is still alive"
        out = (batch * 2).view(Logits)
        outputs.append(weakref.ref(out))
        return out

    y = predict_batches(predict, x, 128)
    assert len(outputs) == 8  # 7 batches of 128 and one of 104
    assert type(y) is np.ndarray and y.dtype == np.float32 and np.array_equal(y, x * 2)
    with pytest.raises(ValueError, match="no rows"):
        predict_batches(predict, x[:0], 128)
