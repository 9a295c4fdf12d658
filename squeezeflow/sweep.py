"""Train big, then compress: the Pareto front of a sweep over teacher size x compression recipe.

Each point is a deployed model measured on one device target: test accuracy, gzip bytes and batch-1 latency (its
models are made by the registry's stages: squeezeflow/stages/sweep.py). A point is on the front when no other point
is at least as good on all three and better on one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from squeezeflow.io import atomic_path


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
