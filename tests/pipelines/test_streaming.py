"""An image folder larger than the run's data memory cap goes through the main job (training, int8 calibration,
evaluation, gates, registration, promotion) read from disk a batch at a time: the run's peak memory stays well below
the same job's with the data held in memory, and both give the same numbers. Measured, not assumed: each job runs in
its own process, which reports its resident-memory high-water mark."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import PROJECT, make_workspace

pytestmark = pytest.mark.slow

SIZE = 128  # RGB 128 x 128: 196 kB per decoded image
BIG = 360  # 68 MB decoded

NET = '''
from torch import nn


def build(num_classes, width=8):
    return nn.Sequential(nn.AvgPool2d(8), nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
'''

# Prints the process's resident-memory high-water mark when the job ends (VmHWM: this process only; file pages the
# kernel caches are not in it).
RUN = '''
import atexit, sys
from pathlib import Path
atexit.register(lambda: print("VMHWM_KB", next(int(l.split()[1]) for l in Path("/proc/self/status").read_text()
                                                .splitlines() if l.startswith("VmHWM:"))))
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _images(root, n):
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % 2
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        # class 1 is brighter in the red channel: learnable from an 8x-pooled image in a couple of epochs
        img = rng.integers(0, 120, (SIZE, SIZE, 3), dtype=np.uint8)
        img[..., 0] += np.uint8(100 * label)
        Image.fromarray(img).save(root / f"c{label}" / f"{i}.png", compress_level=1)


def _job(tmp_path, name, n, memory_mb):
    ws = make_workspace(tmp_path / name, params={
        "dataset": {"name": "image_folder", "path": "images"},
        "teacher": {"source": {"kind": "python", "factory": "net:build"},
                    "train": {"epochs": 5, "patience": 5, "batch_size": 32}},
        "compress": {"recipe": "small"},
        "machine": {"data_memory_mb": memory_mb},
        "sweep": {"target": "cpu-int8", "teacher_scales": [1.0], "recipes": ["small"]},
    }, targets=("cpu-int8",))
    (ws / "net.py").write_text(NET)
    (ws / "recipes" / "small.yaml").write_text(yaml.safe_dump({"name": "small", "steps": [
        {"technique": "distill", "student": {"kwargs": {"width": 4}}, "train": {"epochs": 2, "patience": 2}}],
        "finetune": {"train": {"epochs": 1, "patience": 1}}}))
    _images(ws / "images", n)
    env = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc_site"),
           "PATH": str(PROJECT / ".venv" / "bin") + ":/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(PROJECT)}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", RUN, "--root", str(ws), "run"], capture_output=True, text=True,
                          env=env, cwd=ws, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # each stage restarts the high-water mark and records its own peak: the job's is the highest of those and what
    # came after the last stage began
    stage_peaks = [json.loads(p.read_text())["values"]["stage_peak_rss_mb"]
                   for p in (ws / ".squeezeflow" / "timings").glob("*.json")]
    assert len(stage_peaks) >= 8, stage_peaks
    peak_mb = max([int(proc.stdout.split("VMHWM_KB")[-1].split()[0]) / 1024, *stage_peaks])
    metrics = {s: json.loads((ws / "artifacts" / s / "metrics.json").read_text())
               for s in ("dataset", "teacher", "validate-cpu-int8")}
    return peak_mb, metrics, proc.stdout


def test_an_image_folder_larger_than_the_memory_cap_streams_through_the_main_job(tmp_path):
    decoded_mb = BIG * 3 * SIZE * SIZE * 4 / 2**20
    cap_mb = 8
    assert decoded_mb > 8 * cap_mb
    streamed, metrics, out = _job(tmp_path, "streamed", BIG, cap_mb)
    held, held_metrics, _ = _job(tmp_path, "held", BIG, 4096)
    print(f"peak MB: streamed {streamed:.0f}, held {held:.0f}; decoded {decoded_mb:.0f}")
    assert "promoted" in out.lower()
    assert metrics["dataset"]["samples"] == BIG and metrics["teacher"]["test_accuracy"] > 90
    # the same numbers whether the splits were held or streamed
    assert held_metrics["teacher"]["test_accuracy"] == metrics["teacher"]["test_accuracy"]
    assert held_metrics["validate-cpu-int8"]["accuracy"] == metrics["validate-cpu-int8"]["accuracy"]
    # Holding the splits costs about their size (at 480 images, 90 MB: measured 886 vs 796 MB); streaming them, only
    # batches: a stage that read a whole split (the train split alone is 65% of the data) would close most of the gap.
    assert held - streamed > 0.5 * decoded_mb, (streamed, held, decoded_mb)
