"""The base of every typed config: unknown keys rejected, values frozen. A module of its own so that the measuring
process (squeezeflow.runtimes.worker) builds its few configs without building all of params.yaml's."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
