"""The one resource: a configured squeezeflow Lifecycle (workspace, parameter overrides, MLflow, DVC)."""

from typing import Optional

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from squeezeflow.config import parse_override
from squeezeflow.lifecycle import Lifecycle, Registry
from squeezeflow.workspace import Workspace

class SqueezeflowResource(ConfigurableResource):
    root: Optional[str] = Field(None, description="workspace (DVC repo) folder; default: $SQUEEZEFLOW_ROOT or the project")
    overrides: list[str] = Field(default_factory=list, description="params.yaml overrides, e.g. dataset.name=mnist1d")
    recipe: Optional[str] = Field(None, description="compression recipe: a name in recipes/ or a .yaml path; "
                                  "default: params.yaml's compress.recipe")
    tracking_uri: Optional[str] = Field(None, description="MLflow tracking URI; default: $MLFLOW_TRACKING_URI or SQLite in the workspace")
    push: bool = Field(True, description="push each checkpoint to the DVC remote")

    _lifecycle: Optional[Lifecycle] = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        overrides = dict(parse_override(item) for item in self.overrides)
        if self.recipe:
            overrides["compress.recipe"] = self.recipe
        self._lifecycle = Lifecycle(Workspace(self.root), overrides, self.tracking_uri, self.push)

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:  # used outside a run (direct invocation in tests)
            self.setup_for_execution(None)  # type: ignore[arg-type]
        return self._lifecycle

    @property
    def registry(self) -> Registry:
        return Registry(self.lifecycle)
