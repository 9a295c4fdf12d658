"""Hardware target profiles: one YAML file per target in device_targets/, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from squeezeflow.config import Strict, yaml_problem
from squeezeflow.errors import SqueezeflowInputError, from_pydantic
from squeezeflow.runtimes import BuilderConfig, MeasureSpec, parse_build_config
from squeezeflow.runtimes.base import builders_run_by, load_builders, load_runtimes, runtimes_running

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class Budgets(Strict):
    max_accuracy_drop: float = Field(description="points of test accuracy the target may lose vs the teacher",
                                     ge=0, le=100)
    max_latency_p95_ms: float = Field(gt=0, description="p95 of batch-1 latency on the target's runtime, ms")
    max_model_bytes: int = Field(gt=0, description="size of the built file the target deploys, bytes")
    min_gain_over_baseline: float = Field(0.1, ge=0, le=1, description="fraction of the majority-class baseline's "
                                          "error the model must remove: accuracy >= base + this * (100 - base), base "
                                          "= test accuracy of always predicting the train split's majority class")


class RegressionSpec(Strict):
    """Against the target's current champion, measured side by side in one process on the same test samples.

    Fail closed: a challenger passes only when the confidence interval shows it within the threshold, so an
    interval too wide to tell (a small test split) blocks it too; a person can still promote it with a reason."""

    max_accuracy_drop: float = Field(0.5, ge=0, le=100, description="points: the interval's low end of "
                                     "(challenger - champion) accuracy must be >= -max_accuracy_drop")
    max_latency_increase: float = Field(0.10, ge=0, le=100, description="fraction: the interval's high end of the "
                                        "median per-pair latency ratio challenger/champion must be <= 1 + this")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="level of both intervals")
    latency_pairs: int = Field(400, ge=20, le=1_000_000, description="interleaved champion/challenger timing pairs")
    bootstrap: int = Field(2000, ge=200, le=1_000_000, description="bootstrap resamples per interval")


class DeviceSpec(Strict):
    """Validation on a remote device through its agent (`squeezeflow agent` running there)."""

    agent: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$", description="the agent's URL, e.g. http://board:8765")
    token_env: str = Field("SQUEEZEFLOW_AGENT_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="environment variable holding the agent's token")
    timeout_s: float = Field(900, gt=0, le=86_400, description="a measurement taking longer fails the run's "
                             "validation of this target (not a verdict; the next run measures again)")
    ca_file: str | None = Field(None, description="PEM file of the CA (or the self-signed certificate) that the "
                                "agent's HTTPS certificate must chain to; default: the system's CAs")
    insecure_http: bool = Field(False, description="allow plain http:// to an agent on another machine (the token "
                                "then crosses the network in clear); http:// to this machine is always allowed")

    @model_validator(mode="after")
    def _token_never_in_clear(self):
        from urllib.parse import urlsplit

        host = urlsplit(self.agent).hostname or ""
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        if self.agent.startswith("http://") and not loopback and not self.insecure_http:
            raise ValueError(f"agent {self.agent!r}: plain http would send the token in clear; serve the agent with "
                             "--tls-cert and use https:// (with ca_file), or set insecure_http: true")
        return self


class TargetProfile(Strict):
    name: str = Field(description="the target's name: lowercase, digits and dashes; its assets are the group "
                      "target_<name>, its registered model <prefix>-<model name>-<name>")
    description: str = Field("", description="free text, shown in the UIs")
    runtime: str = Field("onnxruntime", description="the runtime that runs the built file on the target: a runtime "
                         "plugin's name (squeezeflow/runtimes/: onnxruntime, openvino, tensorrt); it must run what "
                         "the builder writes")
    build: SerializeAsAny[BuilderConfig] = Field(description="a registered builder's name and its own options")
    measure: MeasureSpec = MeasureSpec()
    device: DeviceSpec | None = Field(None, description="measure on a remote device's agent instead of this machine")
    recipes: tuple[str, ...] = Field((), description="candidate recipes (names in recipes/) for this target: each is "
                                     "built and measured here on the validation split, and the best one that meets "
                                     "the budgets goes on; empty: the run's recipe (compress.recipe)")
    objective: Literal["smallest", "fastest"] = Field("smallest", description="how the candidate recipes are "
                                                      "ranked among those meeting the budgets: bytes or p95 latency")
    budgets: Budgets
    regression: RegressionSpec = RegressionSpec()
    promotion: Literal["auto", "manual"] = Field("auto", description="auto: a passing candidate becomes champion; "
                                                 "manual: it gets the alias 'challenger' and a person promotes it")

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        runtimes = load_runtimes()
        if value not in runtimes:
            raise ValueError(f"unknown runtime; known: {', '.join(sorted(runtimes))}")
        return value

    @property
    def key(self) -> str:
        """The name as a Dagster/DVC-safe identifier."""
        return self.name.replace("-", "_")

    @property
    def device_pool(self) -> str:
        """The pool (a Dagster concurrency pool) of the device this target measures on: this machine, or its
        agent's host. Two measurements on one device at once would disturb each other's latencies."""
        from urllib.parse import urlsplit

        where = urlsplit(self.device.agent).netloc if self.device else "local"
        return "squeezeflow-device-" + re.sub(r"[^A-Za-z0-9_]", "_", where)


def load_target(path: Path) -> TargetProfile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SqueezeflowInputError(path, "<root>", None, f"not valid YAML: {yaml_problem(exc)}") from None
    except OSError as exc:
        raise SqueezeflowInputError(path, "<file>", str(path), f"unreadable target profile: {exc}") from None
    if not isinstance(data, dict):
        raise SqueezeflowInputError(path, "<root>", data, "expected a mapping")
    try:
        # The builder named in `build:` parses that section: an option it does not take is an error here.
        build = parse_build_config(data["build"], path) if "build" in data else None
        profile = TargetProfile.model_validate({**data, **({"build": build} if build is not None else {})})
    except ValidationError as exc:
        raise from_pydantic(path, exc) from None
    if profile.name != path.stem:
        raise SqueezeflowInputError(path, "name", profile.name, f"must equal the file name '{path.stem}'")
    if not NAME_RE.match(profile.name):
        raise SqueezeflowInputError(path, "name", profile.name, "use lowercase letters, digits and '-'")
    _check_runtime_runs_build(path, profile, runtime_set="runtime" in data)
    limit = profile.build.largest_batch()
    for field, value in [("measure.throughput_batch", profile.measure.throughput_batch),
                         *(("measure.batch_sizes", b) for b in profile.measure.batch_sizes)]:
        if limit is not None and value > limit:
            raise SqueezeflowInputError(path, field, value, f"larger than the largest batch the build accepts "
                                        f"(build.max_batch = {limit})")
    return profile


def _check_runtime_runs_build(path: Path, profile: TargetProfile, runtime_set: bool) -> None:
    """The target's runtime must run the format its builder writes. The error names `build.builder`, or `runtime`
    where the file leaves it to its default, and what either could be instead."""
    runtime, builder = load_runtimes()[profile.runtime], profile.build.builder
    produces = load_builders()[builder].produces
    if produces in runtime.runs:
        return
    runs = ", ".join(sorted(runtime.runs))
    other_builders = ", ".join(builders_run_by(runtime.name)) or "none"
    other_runtimes = ", ".join(runtimes_running(builder)) or "none"
    if runtime_set:
        raise SqueezeflowInputError(path, "build.builder", builder, f"this builder writes {produces}, which the "
                                    f"target's runtime '{runtime.name}' does not run (it runs {runs}); builders "
                                    f"whose output {runtime.name} runs: {other_builders}; runtimes that run "
                                    f"{produces}: {other_runtimes}")
    raise SqueezeflowInputError(path, "runtime", runtime.name, f"not set, so the default, which does not run what "
                                f"the {builder} builder writes ({produces}; it runs {runs}); set runtime to one "
                                f"that runs {produces}: {other_runtimes} (or use a builder whose output "
                                f"{runtime.name} runs: {other_builders})")


def load_targets(directory: Path) -> dict[str, TargetProfile]:
    files = sorted(Path(directory).glob("*.yaml"))
    return {p.stem: load_target(p) for p in files}


def select_targets(all_targets: dict[str, TargetProfile], names: list[str] | None, source: Any) -> list[TargetProfile]:
    if not names:
        return list(all_targets.values())
    unknown = [n for n in names if n not in all_targets]
    if unknown:
        raise SqueezeflowInputError(source, "targets", unknown[0], f"unknown target; known: {sorted(all_targets)}")
    return [all_targets[n] for n in names]
