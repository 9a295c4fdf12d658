"""Champion vs challenger, side by side in one process on the same test samples, with confidence intervals.

Absolute budgets (gate.py) cannot see drift: a challenger a little worse than the champion still fits them.
Here both models run on the same samples, so the per-sample differences are paired, and the intervals come
from a paired bootstrap. The checks fail closed: a challenger passes only when its interval shows it within
the threshold."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from squeezeflow.gates.gate import _finite
from squeezeflow.io import batch_rows, input_array
from squeezeflow.runtimes import MeasureSpec
from squeezeflow.runtimes.engines import load_engine
from squeezeflow.targets import RegressionSpec

_BOOT_CELLS = 4_000_000  # bootstrap resamples are drawn in blocks of at most this many indices, to bound memory
Runner = Callable[[np.ndarray], object]  # one model call on a batch-1 input


def _interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_accuracy(y, pred_champion, pred_challenger, confidence: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> dict:
    """Accuracy difference in points (challenger - champion) with a paired bootstrap interval.

    Per sample the difference is -1, 0 or +1, so resampling the samples is the same as drawing the three counts
    from a multinomial: exact, and vectorised over all resamples at once."""
    y, a, b = (np.asarray(v).ravel() for v in (y, pred_champion, pred_challenger))
    if not (len(y) == len(a) == len(b)) or len(y) == 0:
        raise ValueError(f"need equally long, non-empty label and prediction arrays, got {len(y)}, {len(a)}, {len(b)}")
    n = len(y)
    ok_a, ok_b = a == y, b == y
    only_b, only_a = int((ok_b & ~ok_a).sum()), int((ok_a & ~ok_b).sum())
    counts = np.random.default_rng(seed).multinomial(n, [only_b / n, only_a / n, 1 - (only_b + only_a) / n], n_boot)
    low, high = _interval((counts[:, 0] - counts[:, 1]) * 100.0 / n, confidence)
    return {
        "champion_accuracy": float(ok_a.mean() * 100.0),
        "challenger_accuracy": float(ok_b.mean() * 100.0),
        "diff_points": (only_b - only_a) * 100.0 / n,
        "ci_low": low,
        "ci_high": high,
        "confidence": float(confidence),
        "n": n,
        "challenger_only_correct": only_b,
        "champion_only_correct": only_a,
        "method": "paired bootstrap",
    }


def _timed(run: Runner, x: np.ndarray) -> float:
    t0 = time.perf_counter()
    run(x)
    return time.perf_counter() - t0


def interleaved_latency(run_champion: Runner, run_challenger: Runner, inputs: np.ndarray, pairs: int, warmup: int = 20,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per batch-1 call, champion and challenger alternating on the same input.

    Alternating puts both under the same machine state (other processes, clock frequency), and the random order
    inside each pair keeps whatever the first call of a pair pays (a cold cache) off either model alone."""
    for i in range(warmup):
        one = inputs[i % len(inputs)][None]
        run_champion(one)
        run_challenger(one)
    challenger_first = np.random.default_rng(seed).random(pairs) < 0.5
    t_a, t_b = np.empty(pairs), np.empty(pairs)
    for i in range(pairs):
        one = inputs[i % len(inputs)][None]
        if challenger_first[i]:
            t_b[i] = _timed(run_challenger, one)
            t_a[i] = _timed(run_champion, one)
        else:
            t_a[i] = _timed(run_champion, one)
            t_b[i] = _timed(run_challenger, one)
    return t_a, t_b


def latency_ratio(t_champion, t_challenger, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """The median of the per-pair ratios challenger / champion, with a bootstrap over the pairs.

    Not the ratio of the two medians: on a shared machine single calls land in a fast or a slow mode (another
    process on the core), and a median near the split between modes jumps, so the ratio of medians of a model
    against itself reached x1.3 in 1.4% of trials. Within a pair both calls meet the same machine, and the median
    of the pair ratios stayed within x1.03 (500 A/A trials, benchmarks/gate_precision.py)."""
    t_a, t_b = np.asarray(t_champion, float), np.asarray(t_challenger, float)
    if len(t_a) != len(t_b) or len(t_a) == 0:
        raise ValueError(f"need equally long, non-empty timing arrays, got {len(t_a)} and {len(t_b)}")
    ratios, rng = t_b / t_a, np.random.default_rng(seed)
    n = len(ratios)
    block = max(1, _BOOT_CELLS // n)
    boot = np.concatenate([np.median(ratios[rng.integers(0, n, (min(block, n_boot - start), n))], axis=1)
                           for start in range(0, n_boot, block)])
    low, high = _interval(boot, confidence)
    return {
        "ratio": float(np.median(ratios)),
        "ci_low": low,
        "ci_high": high,
        "confidence": float(confidence),
        "champion_p50_ms": float(np.median(t_a) * 1e3),
        "challenger_p50_ms": float(np.median(t_b) * 1e3),
        "pairs": n,
        "method": "median of per-pair ratios, interleaved pairs, bootstrap over pairs",
    }


def compare_models(champion_onnx: Path, challenger_onnx: Path, x: np.ndarray, y: np.ndarray, measure: MeasureSpec,
                   regression: RegressionSpec, seed: int = 0, runtime: str = "onnxruntime") -> dict:
    """Both models in this process, through the target's runtime with the same settings, on the same samples."""
    champ, chall = (load_engine(runtime, p, measure.threads, measure.session_options)
                    for p in (champion_onnx, challenger_onnx))
    accuracy = paired_accuracy(y, champ.predict(x).argmax(1), chall.predict(x).argmax(1), regression.confidence,
                               regression.bootstrap, seed)
    # the rows the timed calls cycle through, read beforehand (a split on disk is read by rows)
    rows = input_array(x[: batch_rows(x, max(regression.latency_pairs, measure.warmup))])
    t_a, t_b = interleaved_latency(champ.run, chall.run, rows, regression.latency_pairs, measure.warmup, seed)
    latency = latency_ratio(t_a, t_b, regression.confidence, regression.bootstrap, seed)
    return {"accuracy": accuracy, "latency": latency}


def compare_isolated(champion_onnx: Path, challenger_onnx: Path, x: np.ndarray, y: np.ndarray,
                     measure: MeasureSpec, regression: RegressionSpec, seed: int = 0,
                     runtime: str = "onnxruntime") -> dict:
    """`compare_models` in a fresh process under the target's constraints, as validation measures: an untrusted
    champion or candidate never runs in the pipeline's process. Returns the comparison, or {"error": reason}
    ({"error", "transient"} when it ran out of time)."""
    from squeezeflow.runtimes.measure import run_isolated

    task = {"task": "squeezeflow.gates.compare:compare_task", "models": 2,
            "champion": str(Path(champion_onnx).resolve()), "challenger": str(Path(challenger_onnx).resolve()),
            "regression": regression.model_dump(mode="json"), "seed": seed}
    out = run_isolated(task, x, y, measure, runtime)
    if "error" in out:
        return out
    return {"accuracy": out["accuracy"], "latency": out["latency"]}


def compare_task(request: dict) -> dict:
    """The worker's side of compare_isolated (squeezeflow.runtimes.worker runs it in the constrained process)."""
    from squeezeflow.runtimes.worker import data

    x, y, _ = data(request)
    return compare_models(Path(request["champion"]), Path(request["challenger"]), x, y,
                          MeasureSpec.model_validate(request["spec"]),
                          RegressionSpec.model_validate(request["regression"]), request.get("seed", 0),
                          request.get("runtime", "onnxruntime"))


def _interval_text(part: dict, regression: RegressionSpec, fmt: str) -> str:
    confidence = part.get("confidence", regression.confidence)
    pct = f"{confidence * 100:g}%" if _finite(confidence) else "?"
    return f"({pct} CI {part['ci_low']:{fmt}}..{part['ci_high']:{fmt}})"


def _values(part: dict, key: str) -> tuple:
    values = part.get(key), part.get("ci_low"), part.get("ci_high")
    return values, all(_finite(v) for v in values)


def _missing(subject: str, values: tuple) -> str:
    return f"{subject} is missing or not a number (value, CI low, CI high = {values!r}): fail closed"


def _accuracy_check(acc: dict, regression: RegressionSpec) -> dict:
    (d, low, high), finite = _values(acc, "diff_points")
    floor = 0.0 - regression.max_accuracy_drop  # not -0.0 in the message when the drop allowed is 0
    ok = finite and low >= floor
    if not finite:
        message = _missing("accuracy vs champion", (d, low, high))
    else:
        verdict = f"stays above {floor:g}: shown to be no worse" if ok else \
            f"reaches below {floor:g}: not shown to be no worse"
        message = f"accuracy vs champion {d:+.2f} pts {_interval_text(acc, regression, '+.2f')} {verdict}"
    return {"name": "accuracy_vs_champion", "value": d, "low": low, "high": high, "threshold": floor,
            "passed": ok, "message": message}


def _latency_check(lat: dict, regression: RegressionSpec) -> dict:
    (r, low, high), finite = _values(lat, "ratio")
    ceiling = 1.0 + regression.max_latency_increase
    ok = finite and high <= ceiling
    if not finite:
        message = _missing("latency vs champion", (r, low, high))
    else:
        verdict = f"within x{ceiling:.2f}" if ok else f"reaches above x{ceiling:.2f}: not shown to be no slower"
        message = f"latency vs champion x{r:.2f} {_interval_text(lat, regression, '.2f')} {verdict}"
    return {"name": "latency_vs_champion", "value": r, "low": low, "high": high, "threshold": ceiling,
            "passed": ok, "message": message}


def regression_checks(comparison: dict, regression: RegressionSpec) -> list[dict]:
    """Accuracy passes iff the interval's low end >= -max_accuracy_drop; latency iff its high end <=
    1 + max_latency_increase. Anything missing or not a number fails."""
    comparison = comparison if isinstance(comparison, dict) else {}
    acc, lat = comparison.get("accuracy"), comparison.get("latency")
    return [_accuracy_check(acc if isinstance(acc, dict) else {}, regression),
            _latency_check(lat if isinstance(lat, dict) else {}, regression)]
