"""Names shared by every layer: the one way a per-target or per-recipe stage or step is named."""

import re
from pathlib import PurePath


def stage_name(base: str, target: str | None = None) -> str:
    """A per-target stage's (or step's) name: `build` on `cpu-int8` is `build-cpu-int8`."""
    return f"{base}-{target}" if target else base


def recipe_key(ref: str) -> str:
    """A recipe reference (a name in recipes/, or a path to a .yaml) as the suffix of its stages' names:
    `default`, or `my-recipe` for `recipes/my-recipe.yaml`. Only letters, digits, `_` and `-` (DVC params are
    dotted paths)."""
    text = str(ref)
    if "/" in text or "\\" in text or text.endswith((".yaml", ".yml")):
        text = PurePath(text).stem
    return re.sub(r"[^A-Za-z0-9_-]", "_", text) or "recipe"
