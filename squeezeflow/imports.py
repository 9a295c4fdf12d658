"""The user's code, by reference: 'module:function' imported from the workspace (its folder is on sys.path)."""

from __future__ import annotations

import sys


def import_ref(ref: str):
    """'my_pkg.models:build' -> the callable (a model or data factory). The workspace's folder is on sys.path."""

    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a factory is 'module:function' (e.g. 'my_pkg.models:build'), got '{ref}'")
    try:
        module = _import(module_name)
    except Exception as exc:  # ImportError, or an error raised by the user's module while it is imported
        raise ValueError(f"cannot import module '{module_name}' ({type(exc).__name__}: {exc})") from None
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise ValueError(f"module '{module_name}' has no '{attr}'")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"'{ref}' is not callable")
    return fn


def _import(module_name: str):
    """The user's module. Their code may use torchvision (at import or in the factory), which the CPU-only torch
    here cannot import plainly (see import_torchvision): make it importable first when it is installed."""
    import importlib
    from importlib.util import find_spec

    if "torchvision" not in sys.modules and find_spec("torchvision") is not None:
        import_torchvision()
    return importlib.import_module(module_name)


def import_torchvision():
    """torchvision, importable on a CPU-only torch. The only linux wheel on PyPI is built for CUDA: its compiled
    ops (`_C.so`) need libc10_cuda and fail to load, after which torchvision 0.28 still registers fake kernels for
    two of them and raises at import. The models are plain Python and need none of those ops, so declare the two
    schemas and import again."""
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        _keep.append(lib)  # a Library's definitions live as long as the object
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


_keep: list = []
