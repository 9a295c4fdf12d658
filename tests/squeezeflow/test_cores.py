"""torch's threads follow the cores a process is given, not the machine's."""

from __future__ import annotations

import os
import subprocess
import sys

from squeezeflow.cores import available_cores, cpu_quota


def test_a_cgroup_quota_is_read_in_cores_v2_then_v1(tmp_path):
    v2, v1 = tmp_path / "cpu.max", (tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us")
    assert cpu_quota(v2, v1) is None  # neither file: no quota
    v1[0].write_text("150000\n"), v1[1].write_text("100000\n")
    assert cpu_quota(v2, v1) == 1.5
    v1[0].write_text("-1\n")
    assert cpu_quota(v2, v1) is None
    v2.write_text("50000 100000\n")
    assert cpu_quota(v2, v1) == 0.5
    v2.write_text("max 100000\n")
    assert cpu_quota(v2, v1) is None


def test_a_process_pinned_to_one_core_trains_on_one_thread_unless_told_otherwise():
    code = ("import torch; from squeezeflow.cores import use_cores, available_cores; "
            "print(available_cores(), use_cores(), torch.get_num_threads(), use_cores(3), torch.get_num_threads())")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "4"}).stdout.split()
    assert out == ["1", "1", "1", "3", "3"]
    assert available_cores() == len(os.sched_getaffinity(0))
