"""Typed pipeline parameters: the contents of params.yaml, validated on load (unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from squeezeflow.errors import SqueezeflowInputError, from_pydantic
from squeezeflow.strict import Strict

FILE_DATASETS = {"npz": "the .npz file", "table": "the .csv or .parquet file",
                 "image_folder": "the folder holding one subfolder of images per class"}


class DatasetParams(Strict):
    name: str = Field("digits", description="digits, mnist1d (built in); npz, table, image_folder (your file); "
                      "python (your function)")
    path: str | None = Field(None, description="the file or folder, for npz, table and image_folder (relative to "
                                               "the workspace)")
    value_range: tuple[float, float] | None = Field(None, description="expected [min, max] of x")
    num_classes: int | None = Field(None, ge=2)
    label_column: str = Field("label", min_length=1, description="table: the column holding the class")
    image_size: tuple[int, int] | None = Field(None, description="image_folder: [height, width] every image is "
                                               "resized to (null: the first image's size)")
    channels: Literal[1, 3] | None = Field(None, description="image_folder: 1 (grayscale) or 3 (RGB); null: 3 when "
                                           "any image has colour")
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                                description="python: 'my_pkg.data:load', returning (x, y) arrays or a torch Dataset, "
                                            "or {train, val, test} of those (then used as they are)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="python: keyword arguments for the factory")

    @model_validator(mode="after")
    def _path_for_files(self) -> DatasetParams:
        if self.name in FILE_DATASETS and not self.path:
            raise ValueError(f"dataset '{self.name}' needs dataset.path to name {FILE_DATASETS[self.name]}")
        if (self.name == "python") != (self.factory is not None):
            raise ValueError("dataset 'python' needs dataset.factory ('my_pkg.data:load'), and only it takes one")
        if self.image_size is not None and min(self.image_size) < 1:
            raise ValueError(f"image_size must be positive, got {list(self.image_size)}")
        return self


class SplitParams(Strict):
    val: float = Field(0.15, gt=0, lt=0.5, description="fraction held out for checkpoint choice, calibration "
                       "and recipe selection")
    test: float = Field(0.2, gt=0, lt=0.5, description="fraction held out for validation on the target and the "
                        "gate only")


class TrainParams(Strict):
    """One training loop for every model. The class defaults are the short, constant-rate loop techniques use to
    recover; the teacher (and the default recipe's student) use the strong schedule: AdamW, one-cycle, label
    smoothing, the checkpoint chosen on validation loss (validation accuracy saturates on small splits)."""

    epochs: int = Field(60, ge=1, le=10_000, description="passes over the train split (at most)")
    max_steps: int | None = Field(None, ge=1, description="at most this many optimizer steps: fewer epochs on a "
                                  "large dataset (the schedule is laid over the epochs that fit); null: no cap")
    patience: int = Field(8, ge=1, description="stop after this many epochs without a better checkpoint")
    lr: float = Field(1e-3, gt=0, le=1, description="the learning rate (the peak rate under a schedule)")
    batch_size: int = Field(64, ge=1, description="samples per optimizer step")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (decoupled for adamw)")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="adamw: weight decay decoupled from the "
                                                "gradient step")
    schedule: Literal["constant", "onecycle", "cosine"] = Field("constant", description="per-step learning rate: "
                                                                "one-cycle, or cosine after a linear warm-up")
    warmup: float = Field(0.2, ge=0, lt=1, description="fraction of the steps spent warming up (onecycle, cosine)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="share of each label's mass spread over the "
                                   "other classes")
    select: Literal["val_accuracy", "val_loss", "last"] = Field(
        "val_accuracy", description="which checkpoint is kept (and drives early stopping): the best validation "
        "accuracy or loss, or the last one (a one-cycle schedule ends at its best weights: no early stop)")


# Measured on mnist1d (benchmarks/RESULTS.md): under one-cycle the last checkpoint scored 98.4% on test, the one with
# the best val loss 96.9% (val loss rises late as the model grows confident while accuracy still improves).
STRONG_TRAIN = dict(optimizer="adamw", schedule="onecycle", warmup=0.2, label_smoothing=0.1, select="last")


class TeacherTrainParams(TrainParams):
    """The strong schedule as class defaults: a params.yaml that sets only `epochs` keeps the rest of it."""

    epochs: int = Field(40, ge=1, le=10_000)
    patience: int = Field(40, ge=1)
    lr: float = Field(3e-3, gt=0, le=1)
    weight_decay: float = Field(0.05, ge=0)
    optimizer: Literal["adam", "adamw"] = STRONG_TRAIN["optimizer"]
    schedule: Literal["constant", "onecycle", "cosine"] = STRONG_TRAIN["schedule"]
    warmup: float = Field(STRONG_TRAIN["warmup"], ge=0, lt=1)
    label_smoothing: float = Field(STRONG_TRAIN["label_smoothing"], ge=0, lt=1)
    select: Literal["val_accuracy", "val_loss", "last"] = STRONG_TRAIN["select"]
    processes: int = Field(1, ge=1, le=256, description="train in this many processes (torch DDP started by "
                           "torchrun: gloo on CPU, NCCL on GPUs), each with its share of every batch; rank 0 "
                           "reports and saves. Deterministic for a given count and seed")


class BuiltinSource(Strict):
    """squeezeflow's own architectures (teacher.arch, teacher.hidden)."""

    kind: Literal["builtin"] = "builtin"


class FactorySource(Strict):
    """A model built by a function (the user's, or squeezeflow's torchvision adapter), from an optional checkpoint."""

    checkpoint: str | None = Field(None, description="a state dict (torch.save(model.state_dict())), loaded with "
                                                     "weights_only=True")
    train: bool = Field(True, description="train here (from the checkpoint, if any); false: compress the "
                                          "checkpoint's model as it is")

    @model_validator(mode="after")
    def _checkpoint_to_keep(self):
        if not self.train and not self.checkpoint:
            raise ValueError("train: false compresses a trained model: give its checkpoint")
        return self

    # What builds it: 'module:function', its keyword arguments, and the params field an error about it names.
    factory_field: ClassVar[str] = "teacher.source.factory"

    def factory_ref(self) -> str:
        raise NotImplementedError

    def factory_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def factory_value(self) -> str:
        return self.factory_ref()

    def label(self) -> str:
        """How metrics and lineage name the model."""
        return self.factory_ref()


class PythonSource(FactorySource):
    """The user's own nn.Module: `factory` is 'module:function' importable from the workspace's folder, called with
    `kwargs` (plus num_classes / input_shape / in_channels when it takes them and kwargs do not set them)."""

    kind: Literal["python"]
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
                         description="'my_pkg.models:build': a function (or class) returning an nn.Module")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the factory")

    def factory_ref(self) -> str:
        return self.factory

    def factory_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)


class TorchvisionSource(FactorySource):
    """A torchvision architecture by name, built with `weights=None` (weights are never downloaded), the dataset's
    number of classes and its input channels."""

    kind: Literal["torchvision"]
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="resnet18, mobilenet_v3_small, ... "
                      "(torchvision.models.list_models())")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the architecture "
                                   "(e.g. width_mult, dropout)")

    factory_field: ClassVar[str] = "teacher.source.name"

    def factory_ref(self) -> str:
        return "squeezeflow.models.vision:torchvision_model"

    def factory_kwargs(self) -> dict[str, Any]:
        return {"name": self.name, **self.kwargs}

    def factory_value(self) -> str:
        return self.name

    def label(self) -> str:
        return f"torchvision:{self.name}"


class HuggingFaceSource(FactorySource):
    """A Hugging Face `transformers` sequence classifier on token ids: from a local directory (config.json and
    weights, loaded with local_files_only=True: never downloaded) or from a config alone (then trained here). Its
    forward takes the ids and masks the padding (config.pad_token_id) itself."""

    kind: Literal["huggingface"]
    path: str | None = Field(None, description="a local directory as save_pretrained writes it (relative to the "
                             "workspace)")
    config: dict[str, Any] | None = Field(None, description="a config instead of a directory: model_type and its "
                                          "sizes, e.g. {model_type: bert, hidden_size: 64, num_hidden_layers: 2}")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="config fields to override (a student's "
                                   "num_hidden_layers, say)")

    @property
    def factory_field(self) -> str:  # what an error about building it names
        return "teacher.source.path" if self.path else "teacher.source.config"

    @model_validator(mode="after")
    def _checkpoint_to_keep(self):  # a directory holds its trained weights: train: false needs no checkpoint
        if not self.train and not (self.checkpoint or self.path):
            raise ValueError("train: false compresses a trained model: give its directory (path) or a checkpoint")
        return self

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.path is None) == (self.config is None):
            raise ValueError("give exactly one of path (a local model directory) or config (model_type and sizes)")
        if self.config is not None and "model_type" not in self.config:
            raise ValueError("config needs model_type (bert, distilbert, roberta, ...)")
        return self

    def factory_ref(self) -> str:
        return "squeezeflow.models.hf:hf_model"

    def factory_kwargs(self) -> dict[str, Any]:
        return {"path": self.path, "config": self.config, **self.kwargs}

    def factory_value(self) -> str:
        return self.path or str(self.config.get("model_type"))

    def label(self) -> str:
        return f"huggingface:{Path(self.path).name if self.path else self.config['model_type']}"


class OnnxSource(Strict):
    """An exported, trained model as a frozen teacher: ONNX Runtime computes its outputs and the recipe's first step
    distils them into a torch student (student.arch or student.factory; by default a built-in one chosen by the
    data, `teacher.arch: auto`)."""

    kind: Literal["onnx"]
    path: str = Field(min_length=1, description="the .onnx file (relative to the workspace)")

    def label(self) -> str:
        return f"onnx:{Path(self.path).name}"


ModelSource = Annotated[BuiltinSource | PythonSource | TorchvisionSource | HuggingFaceSource | OnnxSource,
                        Field(discriminator="kind")]


class TeacherParams(Strict):
    """Train big: a wide model; the recipe makes it small. `auto` picks a CNN for images and 1-D signals, an MLP
    for tabular features (models.choose_arch); no `hidden`, that architecture's default size. Or the user's own
    model (`source: {kind: python, factory: ...}`)."""

    source: ModelSource = Field(default_factory=BuiltinSource, description="where the teacher comes from")
    arch: str = Field("auto", description="auto (a CNN for images and 1-D signals, an MLP for tabular "
                      "features), cnn or mlp: the built-in architectures")
    hidden: tuple[int, ...] | None = Field(None, description="channels per block (cnn) or widths (mlp); "
                                           "null: cnn 128-256-256, mlp 512-512")
    dropout: float = Field(0.1, ge=0, lt=1)
    extra: dict[str, int | float | str] = {}
    normalize: Literal["feature", "none"] = Field("feature", description="standardize each input feature with "
                                                  "the train split's mean and std, inside the model (and its ONNX)")
    train: TeacherTrainParams = Field(default_factory=lambda: TeacherTrainParams())


class CompressParams(Strict):
    recipe: str = Field("default", min_length=1,
                        description="a recipe name (recipes/<name>.yaml in the workspace, then the shipped ones) "
                                    "or a path")


class SweepParams(Strict):
    """Train big, then compress: teachers at these fractions of teacher.hidden, each compressed by each recipe."""

    teacher_scales: tuple[float, ...] = Field((0.25, 0.5, 1.0), min_length=1)
    recipes: tuple[str, ...] = Field(("default",), min_length=1)
    target: str = Field("cpu-fp32", description="the device target whose build and runtime measure every point")

    @model_validator(mode="after")
    def _positive(self) -> SweepParams:
        if any(s <= 0 or s > 4 for s in self.teacher_scales):
            raise ValueError(f"teacher_scales must be in (0, 4], got {list(self.teacher_scales)}")
        return self


class ExportParams(Strict):
    opset: int = Field(17, ge=13, le=23, description="the TorchScript exporter's opset; the dynamo exporter "
                       "emits max(opset, 18)")
    exporter: Literal["dynamo", "torchscript"] = Field("dynamo", description="dynamo: torch.export + onnxscript, "
                                                        "falling back to the TorchScript exporter (the reason "
                                                        "recorded in the exported stage's metrics)")
    parity_atol: float = Field(1e-4, gt=0)


class RegistryParams(Strict):
    """Registered as `<model_prefix>-<model_name>-<target>`: one champion per dataset and target."""

    model_prefix: str = Field("squeezeflow", pattern=r"^[A-Za-z0-9_.-]+$")
    model_name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                                   description="default: the built-in dataset's name or the .npz file's stem")


class MachineParams(Strict):
    """How a run uses this machine. No stage's output depends on these: changing them reruns nothing."""

    data_memory_mb: float = Field(1024, ge=0, description=(
        "a data split up to this size is held in memory; a larger one is read from disk a batch at a time "
        "(training, calibration, evaluation): the numbers are the same, only slower"))
    threads: int | None = Field(None, ge=1, le=1024, description=(
        "torch's threads for training and inference in each stage; null: every core the process is given (its CPU "
        "affinity, within a container's CPU quota). The measuring process uses its target's measure.threads"))


class NotifyParams(Strict):
    """A webhook told what happened to each target of a run: promoted, held back by its gate, failed, or skipped
    because its runtime is unavailable. One JSON message per run, target and event (a Slack-compatible `text` plus
    the fields); a transient error is retried; sending never fails or changes the run."""

    webhook_url: str | None = Field(None, pattern=r"^https?://\S+$", description="where messages are POSTed; the "
                                    "environment variable named by webhook_env wins (keep secrets out of git); "
                                    "neither set: no messages")
    webhook_env: str = Field("SQUEEZEFLOW_WEBHOOK_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="environment variable holding the webhook URL")
    events: tuple[Literal["promoted", "held_back", "failed", "unavailable"], ...] = Field(
        ("promoted", "held_back", "failed", "unavailable"), description="which events are sent")
    retries: int = Field(2, ge=0, le=10, description="retries after a transient error (connection, timeout, 429, "
                         "5xx), waiting backoff_s, then twice that, ...")
    backoff_s: float = Field(0.5, ge=0, le=60)
    timeout_s: float = Field(5.0, gt=0, le=60, description="per attempt")
    dagster_url: str | None = Field(None, pattern=r"^https?://\S+$", description="the Dagster UI's base URL, for "
                                    "a link to the run in each message (e.g. http://dagster.internal:3000)")


class RetentionParams(Strict):
    """What `squeezeflow gc` and the `gc` job keep. Never deleted whatever these say: the champion, the challenger,
    every earlier champion (a rollback can reach it) and anything the workspace's dvc.lock names."""

    keep_versions: int = Field(10, ge=0, description="the newest registered versions kept per model, besides the "
                               "champion, the challenger and earlier champions")
    remote: bool = Field(True, description="also sweep the default DVC remote when it is a folder on this machine "
                         "(a cloud bucket's retention is its own policy)")


class Params(Strict):
    seed: int = Field(0, ge=0, description="every random choice: the splits, initial weights, batch order")
    dataset: DatasetParams = DatasetParams()
    split: SplitParams = SplitParams()
    teacher: TeacherParams = TeacherParams()
    compress: CompressParams = CompressParams()
    export: ExportParams = ExportParams()
    sweep: SweepParams = SweepParams()
    registry: RegistryParams = RegistryParams()
    machine: MachineParams = MachineParams()
    notify: NotifyParams = NotifyParams()
    retention: RetentionParams = RetentionParams()


def anchored(params: Params, root: Path) -> Params:
    """Relative file paths in params (the dataset, the teacher's checkpoint) read as relative to the workspace."""
    def at(path: str | None) -> str | None:
        return str(Path(root) / path) if path and not Path(path).is_absolute() else path

    update = {"dataset": params.dataset.model_copy(update={"path": at(params.dataset.path)})}
    src = params.teacher.source
    if isinstance(src, FactorySource) and src.checkpoint:
        src = src.model_copy(update={"checkpoint": at(src.checkpoint)})
    if isinstance(src, HuggingFaceSource) and src.path:
        src = src.model_copy(update={"path": at(src.path)})
    elif isinstance(src, OnnxSource):
        src = src.model_copy(update={"path": at(src.path)})
    if src is not params.teacher.source:
        update["teacher"] = params.teacher.model_copy(update={"source": src})
    return params.model_copy(update=update)


def parse_params(data: Any, source: str | Path) -> Params:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SqueezeflowInputError(source, "<root>", data, "expected a mapping of parameters")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise from_pydantic(source, exc) from None


def yaml_problem(exc: Exception) -> str:
    """A YAML error on one line (where, and what), not PyYAML's multi-line excerpt of the file."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is None or not problem:
        return " ".join(str(exc).split())
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    where = f" (started at line {cmark.line + 1}, column {cmark.column + 1})" if context and cmark else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f", {context}{where}" if context else "")


def load_params(path: Path) -> Params:
    path = Path(path)
    if not path.exists():
        return Params()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SqueezeflowInputError(path, "<root>", None, f"not valid YAML: {yaml_problem(exc)}") from None
    return parse_params(data, path)


def parse_override(item: str) -> tuple[str, Any]:
    """'teacher.train.epochs=5' -> ('teacher.train.epochs', 5); the value is read as YAML."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SqueezeflowInputError("--set", "<override>", item, "expected KEY=VALUE, e.g. seed=1")
    return key.strip(), yaml.safe_load(raw) if raw != "" else None


def apply_overrides(params: Params, overrides: dict[str, Any], source: str = "run config") -> Params:
    """Set dotted keys (like `dvc exp run -S`), then re-validate the whole thing."""
    data = params.model_dump(mode="json")
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise SqueezeflowInputError(source, dotted, value, f"unknown parameter section '{part}'")
            node = node[part]
        if leaf not in node:
            raise SqueezeflowInputError(source, dotted, value, "unknown parameter")
        node[leaf] = value
    return parse_params(data, source)
