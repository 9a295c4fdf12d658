"""The best recipe per target: each candidate recipe's model is built for the target and measured on it on the
validation split (never the test split, which the gate keeps for the final verdict); the target's budgets are
checked there, and among the candidates that meet them the smallest (or the fastest, per the target's
`objective`) wins. The decision and its reason are recorded, and drawn as the target's Pareto plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from squeezeflow.gates.gate import evaluate_gate, failed_reasons
from squeezeflow.io import atomic_path
from squeezeflow.targets import Budgets

RANK = {"smallest": ("model_bytes", "B"), "fastest": ("latency_p95_ms", "ms p95")}


@dataclass(frozen=True)
class Measured:
    """One candidate recipe, built for the target and measured on the validation split."""

    recipe: str
    accuracy: float | None
    model_bytes: int | None
    latency_p95_ms: float | None
    meets_budgets: bool = False
    failures: list[str] = field(default_factory=list)
    error: str = ""
    latency_p95_interval: tuple[float, float] | None = None  # 95% interval of the p95, ms
    failed_checks: list[str] = field(default_factory=list)  # the budgets it misses, by name


def judge(recipe: str, metrics: dict, teacher_val_accuracy: float, budgets: Budgets, baseline: float) -> Measured:
    """The target's budgets, applied to the validation-split measurement (the gate's own rules)."""
    verdict = evaluate_gate(metrics, teacher_val_accuracy, budgets, baseline)
    low, high = metrics.get("latency_p95_ms_low"), metrics.get("latency_p95_ms_high")
    return Measured(recipe, metrics.get("accuracy"), metrics.get("model_bytes"), metrics.get("latency_p95_ms"),
                    verdict.passed, failed_reasons(verdict.checks), metrics.get("error", ""),
                    (low, high) if low is not None and high is not None else None,
                    [c["name"] for c in verdict.checks if not c["passed"]])


def _fastest(fit: list[Measured]) -> Measured:
    """The fastest by p95; candidates whose p95 intervals overlap the fastest one's are not shown to be slower:
    among those the smallest wins, so two runs of the same candidates choose the same one."""
    def interval(c: Measured) -> tuple[float, float]:
        return c.latency_p95_interval or (c.latency_p95_ms, c.latency_p95_ms)

    quickest = min(fit, key=lambda c: (c.latency_p95_ms, c.recipe))
    tied = [c for c in fit if interval(c)[0] <= interval(quickest)[1] and interval(quickest)[0] <= interval(c)[1]]
    return min(tied, key=lambda c: (c.model_bytes, -(c.accuracy or 0.0), c.recipe))


def choose(candidates: list[Measured], objective: str) -> tuple[Measured, str]:
    """The winner and why. Meeting the budgets first; among those, the objective (accuracy breaks ties). When no
    candidate meets them, the most accurate goes on: the gate then judges it on the test split and holds it back."""
    key, unit = RANK[objective]
    fit = [c for c in candidates if c.meets_budgets]
    if fit:
        best = _fastest(fit) if objective == "fastest" else \
            min(fit, key=lambda c: (getattr(c, key), -(c.accuracy or 0.0), c.recipe))
        why = (f"{objective} ({key}) of the {len(fit)} of {len(candidates)} candidate recipes that meet the "
               f"target's budgets on the validation split: {_describe(best)}")
    else:
        measured = [c for c in candidates if c.accuracy is not None] or candidates
        best = max(measured, key=lambda c: (c.accuracy or 0.0, -(c.model_bytes or 0), c.recipe))
        why = (f"none of the {len(candidates)} candidate recipes meets the target's budgets on the validation split; "
               f"the most accurate goes on to the gate: {_describe(best)}")
    others = [f"{c.recipe} ({'meets the budgets, ' + _describe(c, False) if c.meets_budgets else c.failures[0]})"
              for c in candidates if c is not best and (c.meets_budgets or c.failures)]
    if others:
        why += "; not chosen: " + "; ".join(others)
    return best, why


def _describe(c: Measured, name: bool = True) -> str:
    parts = [f"{c.model_bytes:,} B" if c.model_bytes is not None else None,
             f"p95 {c.latency_p95_ms:.3f} ms" if c.latency_p95_ms is not None else None,
             f"val accuracy {c.accuracy:.2f}%" if c.accuracy is not None else None]
    text = ", ".join(p for p in parts if p)
    return f"{c.recipe} ({text})" if name else text


def as_records(candidates: list[Measured]) -> list[dict]:
    return [asdict(c) for c in candidates]


def decision_record(candidates: list[Measured], chosen: str) -> list[dict]:
    """What the choice rests on, without the measurements that vary run to run (latencies): the stage's tracked
    output, so identical runs give identical DVC hashes."""
    return [{"recipe": c.recipe, "accuracy": c.accuracy, "model_bytes": c.model_bytes,
             "meets_budgets": c.meets_budgets, "failed_checks": c.failed_checks, "error": c.error,
             "chosen": c.recipe == chosen} for c in candidates]


def plot_candidates(candidates: list[Measured], chosen: str, budgets: Budgets, teacher_val_accuracy: float,
                    path: Path, title: str) -> None:
    """Validation accuracy against bytes and against p95 latency, the budgets as dashed lines, the winner starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in candidates if c.accuracy is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    floor = teacher_val_accuracy - budgets.max_accuracy_drop
    for ax, key, limit, label in ((axes[0], "model_bytes", budgets.max_model_bytes, "model bytes"),
                                  (axes[1], "latency_p95_ms", budgets.max_latency_p95_ms, "latency p95, ms")):
        for c in shown:
            ax.scatter(getattr(c, key), c.accuracy, marker="*" if c.recipe == chosen else "o",
                       s=220 if c.recipe == chosen else 50,
                       c="tab:green" if c.meets_budgets else "tab:gray", zorder=3)
            ax.annotate(c.recipe, (getattr(c, key), c.accuracy), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.axvline(limit, color="tab:red", ls="--", lw=1, label=f"budget: {label} <= {limit:g}")
        ax.axhline(floor, color="tab:orange", ls="--", lw=1, label=f"budget: accuracy >= {floor:.2f}%")
        ax.set_xlabel(f"{label} (validation measurement on the target)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("validation accuracy, %")
    fig.suptitle(f"{title}: green meets every budget, the star goes on")
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
