"""The user's code by reference ('module:function'), importable from the workspace."""

import subprocess
import sys

from tests.conftest import PROJECT


def test_a_users_module_that_imports_torchvision_loads_in_a_fresh_process(tmp_path):
    # the CPU-only torch here cannot `import torchvision` plainly (its wheel's ops are built for CUDA)
    (tmp_path / "mynet.py").write_text("from torchvision.models import resnet18\n\n\n"
                                       "def build(num_classes):\n    return resnet18(num_classes=num_classes)\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from squeezeflow.imports import import_ref; "
            "print(sum(p.numel() for p in import_ref('mynet:build')(4).parameters()))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=PROJECT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) == 11_178_564  # resnet18 with a 4-class head: 11,176,512 + 512 * 4 + 4
