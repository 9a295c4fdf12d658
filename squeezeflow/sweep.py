"""Train big, then compress: a sweep over teacher size x compression recipe, and its Pareto front.

Each point is a deployed model measured on one device target: test accuracy, gzip bytes and batch-1 latency.
A point is on the front when no other point is at least as good on all three and better on one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from squeezeflow.compression import CompressContext
from squeezeflow.compression.recipe import Recipe
from squeezeflow.config import TrainParams
from squeezeflow.data import Splits
from squeezeflow.evaluate import deploy_and_measure
from squeezeflow.io import atomic_path
from squeezeflow.models import ModelSpec
from squeezeflow.targets import TargetProfile
from squeezeflow.training import train_from_scratch


@dataclass(frozen=True)
class Point:
    teacher_scale: float
    recipe: str  # "teacher" for the uncompressed model
    accuracy: float
    gzip_bytes: int
    latency_p50_ms: float
    parameters: int
    flops: int
    on_front: bool = False

    @property
    def latency_us(self) -> float:
        return self.latency_p50_ms * 1e3

    @property
    def label(self) -> str:
        return f"x{self.teacher_scale:g} {self.recipe}"


def scaled(spec: ModelSpec, scale: float) -> ModelSpec:
    return ModelSpec(spec.arch, spec.input_shape, spec.num_classes,
                     tuple(max(1, round(h * scale)) for h in spec.hidden), spec.dropout, dict(spec.extra))


def front_table(points: list[dict]) -> str:
    """The sweep's points as a Markdown table, the front first."""
    rows = ["| teacher | recipe | accuracy % | gzip bytes | p50 us | front |", "|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (-p["on_front"], -p["accuracy"])):
        rows.append(f"| x{p['teacher_scale']:g} | {p['recipe']} | {p['accuracy']:.2f} | {p['gzip_bytes']} | "
                    f"{p['latency_p50_ms'] * 1e3:.1f} | {'yes' if p['on_front'] else ''} |")
    return "\n".join(rows)


def dominates(a: Point, b: Point) -> bool:
    no_worse = a.accuracy >= b.accuracy and a.gzip_bytes <= b.gzip_bytes and a.latency_p50_ms <= b.latency_p50_ms
    better = a.accuracy > b.accuracy or a.gzip_bytes < b.gzip_bytes or a.latency_p50_ms < b.latency_p50_ms
    return no_worse and better


def pareto_front(points: list[Point]) -> list[Point]:
    """The points again, each marked on or off the front."""
    return [Point(**{**asdict(p), "on_front": not any(dominates(q, p) for q in points if q is not p)}) for p in points]


def run_sweep(spec: ModelSpec, train: TrainParams, scales: tuple[float, ...], recipes: list[Recipe], splits: Splits,
              target: TargetProfile, workdir: Path, seed: int, log: Callable[[str], None] = print,
              opset: int = 17, normalize: bool = True, exporter: str = "dynamo") -> list[Point]:
    trn, val = (splits.x["train"], splits.y["train"]), (splits.x["val"], splits.y["val"])
    points = []
    for scale in scales:
        tspec = scaled(spec, scale)
        teacher, _ = train_from_scratch(tspec, trn, val, train, seed, normalize, desc=f"teacher x{scale:g}")
        points.append(_point(scale, "teacher", teacher, tspec, splits, target, workdir, (opset, exporter)))
        for recipe in recipes:
            log(f"[sweep] teacher x{scale:g} -> recipe {recipe.name}")
            ctx = CompressContext(teacher, tspec, trn, val, seed, log=log)
            model, mspec, _ = recipe.run(copy.deepcopy(teacher), ctx)
            recipe.recover(model, ctx)
            points.append(_point(scale, recipe.name, model, mspec, splits, target, workdir, (opset, exporter)))
    return pareto_front(points)


def _point(scale: float, recipe: str, model, spec: ModelSpec, splits: Splits, target: TargetProfile,
           workdir: Path, export: tuple[int, str]) -> Point:
    m = deploy_and_measure(model, spec, splits, Path(workdir) / f"x{scale:g}-{recipe}", target, *export)
    return Point(scale, recipe, m["accuracy"], m["model_gzip_bytes"], m["latency_p50_ms"], m["parameters"], m["flops"])


def plot_front(points: list[Point], path: Path, title: str) -> None:
    """Accuracy against size and against latency; the front is joined up, every point labelled."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, xlabel in ((axes[0], "gzip_bytes", "deployed size, gzip bytes (log)"),
                            (axes[1], "latency_us", "latency p50 at batch 1, us (log)")):
        for is_teacher, marker in ((True, "s"), (False, "o")):
            sel = [p for p in points if (p.recipe == "teacher") == is_teacher]
            ax.scatter([getattr(p, key) for p in sel], [p.accuracy for p in sel], marker=marker,
                       c=["tab:red" if p.on_front else "tab:gray" for p in sel],
                       label="teacher" if is_teacher else "compressed")
        front = sorted((p for p in points if p.on_front), key=lambda p: getattr(p, key))
        ax.plot([getattr(p, key) for p in front], [p.accuracy for p in front], "r--", lw=1, label="Pareto front")
        for p in points:
            ax.annotate(p.label, (getattr(p, key), p.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels on a log axis overlap
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy, %")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
