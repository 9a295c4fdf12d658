"""The user's code, by reference: 'module:function' imported from the workspace (its folder is on sys.path)."""

from __future__ import annotations


def import_ref(ref: str):
    """'my_pkg.models:build' -> the callable (a model or data factory). The workspace's folder is on sys.path."""
    import importlib

    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a factory is 'module:function' (e.g. 'my_pkg.models:build'), got '{ref}'")
    try:
        module = importlib.import_module(module_name)
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
