"""Names shared by every layer: the one way a per-target stage or step is named."""


def stage_name(base: str, target: str | None = None) -> str:
    """A per-target stage's (or step's) name: `build` on `cpu-int8` is `build-cpu-int8`."""
    return f"{base}-{target}" if target else base
