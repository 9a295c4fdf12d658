"""How often the champion-vs-challenger checks (squeezeflow/gates/compare.py) get it right.

    .venv/bin/python benchmarks/gate_precision.py [--trials 200] [--pairs 400]

Scenarios, each over --trials trials with the default RegressionSpec (0.5 points, +10% latency, 95%, 2000 resamples):
  A/A           a real ONNX model against itself (two sessions on one file): both checks must pass >= 99%.
  20% slower    the same outputs from a graph doing redundant work, calibrated to ~1.2x: blocked >= 95%.
  1 pt worse    a simulated 1000-sample split where the challenger makes exactly 10 more errors: blocked >= 95%.
  equal         a challenger with the same true accuracy, different errors: how often failing closed holds it back.
Latency trials run compare_models on real ONNX Runtime sessions; accuracy trials call paired_accuracy on
simulated predictions (per-sample correctness is all the accuracy check sees). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from squeezeflow.export import export_onnx
from squeezeflow.gates import compare_models, interleaved_latency, latency_ratio, paired_accuracy, regression_checks
from squeezeflow.models import ModelSpec, build_model
from squeezeflow.onnxio import INPUT, OUTPUT, session
from squeezeflow.runtimes import MeasureSpec
from squeezeflow.targets import RegressionSpec

# the default recipe's student (16-32-32 CNN) on digits: what a champion on cpu-fp32 looks like
CHAMPION = ModelSpec("cnn", (8, 8), 10, (16, 32, 32))
MEASURE = MeasureSpec()
EXTRA_IN = 64  # the flattened 8x8 input the redundant MatMul reads
CALIBRATION_PAIRS = 4000
CALIBRATION_WIDTHS = (16, 64, 128, 256, 512, 1024)
TEST_SAMPLES, CHAMPION_ACCURACY, DISCORDANCE = 1000, 0.90, 0.03


def digits_x() -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images[:360] / 16.0).astype(np.float32)  # the size of digits' test split


def export_champion(path: Path) -> Path:
    torch.manual_seed(0)
    export_onnx(build_model(CHAMPION), CHAMPION.input_shape, path, 17)
    return path


def export_slower(champion: Path, path: Path, width: int) -> Path:
    """The champion plus a redundant (64 x width) MatMul on its flattened input, summed into the logits times a
    zero. The zero is an initializer and the MatMul reads the input, so ORT's constant folding cannot drop the
    work; the extra term is finite, so 0 * it is exactly 0 and the logits equal the champion's bit for bit."""
    model = onnx.load(str(champion))
    g = model.graph
    for node in g.node:
        node.output[:] = ["logits_core" if o == OUTPUT else o for o in node.output]
    w = np.random.default_rng(0).normal(0, 1 / 8, (EXTRA_IN, width)).astype(np.float32)
    g.initializer.extend([numpy_helper.from_array(w, "extra_w"),
                          numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    g.node.extend([helper.make_node("Flatten", [INPUT], ["extra_in"], axis=1),
                   helper.make_node("MatMul", ["extra_in", "extra_w"], ["extra"]),
                   helper.make_node("ReduceSum", ["extra"], ["extra_sum"], keepdims=1),
                   helper.make_node("Mul", ["extra_sum", "zero"], ["extra_zeroed"]),
                   helper.make_node("Add", ["logits_core", "extra_zeroed"], [OUTPUT])])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def true_ratio(champion: Path, challenger: Path, x: np.ndarray, pairs: int = CALIBRATION_PAIRS) -> float:
    """The latency ratio over many interleaved pairs, by the gate's own estimator: what the trials should find."""
    a, b = (session(p, MEASURE.threads, MEASURE.session_options) for p in (champion, challenger))
    t_a, t_b = interleaved_latency(lambda one: a.run([OUTPUT], {INPUT: one}), lambda one: b.run([OUTPUT], {INPUT: one}),
                                   x, pairs, warmup=200, seed=12345)
    return latency_ratio(t_a, t_b)["ratio"]


def calibrate(champion: Path, root: Path, x: np.ndarray, target: float = 1.20) -> tuple[Path, int, float]:
    """The MatMul width whose measured ratio is nearest the target. A grid, not a search: most of the cost is
    ORT's per-node overhead (~17% for the five nodes on this model), the width adds little."""
    measured = {w: true_ratio(champion, export_slower(champion, root / f"slower_{w}.onnx", w), x)
                for w in CALIBRATION_WIDTHS}
    best = min(measured, key=lambda w: abs(measured[w] - target))
    print("calibration (width: ratio): " + ", ".join(f"{w}: x{r:.3f}" for w, r in measured.items()))
    return root / f"slower_{best}.onnx", best, measured[best]


def latency_trials(champion: Path, challenger: Path, x: np.ndarray, regression: RegressionSpec, trials: int) -> list:
    y = np.zeros(len(x), np.int64)  # untrained models: the labels only matter for the accuracy check's pairing
    return [regression_checks(compare_models(champion, challenger, x, y, MEASURE, regression, seed=t), regression)
            for t in range(trials)]


def simulated_split(rng, champion_only: int, challenger_only: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two prediction vectors on TEST_SAMPLES samples: the champion right on CHAMPION_ACCURACY of them,
    the challenger differing from it on exactly the given samples (at random positions)."""
    n = TEST_SAMPLES
    y = rng.integers(0, 10, n)
    right = np.zeros(n, bool)
    right[rng.permutation(n)[: round(n * CHAMPION_ACCURACY)]] = True
    champ_right, champ_wrong = rng.permutation(np.flatnonzero(right)), rng.permutation(np.flatnonzero(~right))
    chall_right = right.copy()
    chall_right[champ_right[:champion_only]] = False
    chall_right[champ_wrong[:challenger_only]] = True
    wrong_label = (y + rng.integers(1, 10, n)) % 10
    return y, np.where(right, y, wrong_label), np.where(chall_right, y, wrong_label)


def one_point_worse(rng) -> tuple[int, int]:
    """Exactly 10 more errors in 1000, b samples each way besides (b ~ 10: ~3% of samples discordant)."""
    b = int(rng.binomial(TEST_SAMPLES, (DISCORDANCE - 0.01) / 2))
    return b + 10, b


def equally_accurate(discordance: float):
    """The same true accuracy: each sample discordant with this probability, either way alike."""
    def draw(rng) -> tuple[int, int]:
        champion_only, challenger_only, _ = rng.multinomial(TEST_SAMPLES, [discordance / 2] * 2 + [1 - discordance])
        return int(champion_only), int(challenger_only)

    return draw


def identical_outputs(champion: Path, challenger: Path, x: np.ndarray) -> bool:
    a, b = (session(p).run([OUTPUT], {INPUT: x})[0] for p in (champion, challenger))
    return bool(np.array_equal(a, b))


def accuracy_trials(draw, regression: RegressionSpec, trials: int) -> list:
    """draw(rng) -> (champion_only, challenger_only) counts for one trial's split."""
    checks = []
    for t in range(trials):
        rng = np.random.default_rng(t)
        y, a, b = simulated_split(rng, *draw(rng))
        acc = paired_accuracy(y, a, b, regression.confidence, regression.bootstrap, seed=t)
        checks.append(regression_checks({"accuracy": acc}, regression)[:1])
    return checks


def row(name: str, runs: list, measured: str, required: float | None, which: str) -> dict:
    """which: the check the row is about ('accuracy', 'latency' or 'both'); measured: 'pass' or 'blocked'."""
    picked = [[c for c in checks if which == "both" or c["name"].startswith(which)] for checks in runs]
    passed = np.array([all(c["passed"] for c in checks) for checks in picked])
    rate = passed.mean() if measured == "pass" else 1 - passed.mean()
    shown = [checks[-1] for checks in picked]  # with both picked, the latency check: the noisy one
    return {"scenario": name, "trials": len(runs), "measured": measured, "rate": rate, "required": required,
            "verdict": "-" if required is None else ("OK" if rate >= required else "FAIL"),
            "estimate": np.median([c["value"] for c in shown]),
            "ci_width": np.median([c["high"] - c["low"] for c in shown]), "check": shown[0]["name"]}


def print_table(rows: list[dict]) -> None:
    print("| scenario | trials | measured | rate | required | verdict | median estimate | median CI width |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        latency = r["check"].startswith("latency")
        estimate = f"x{r['estimate']:.3f}" if latency else f"{r['estimate']:+.2f} pts"
        width = f"{r['ci_width']:.3f}" if latency else f"{r['ci_width']:.2f} pts"
        required = "report" if r["required"] is None else f">= {r['required']:.0%}"
        print(f"| {r['scenario']} | {r['trials']} | {r['measured']} | {r['rate']:.1%} | {required} | {r['verdict']} "
              f"| {estimate} | {width} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=RegressionSpec().latency_pairs)
    args = ap.parse_args()
    regression = RegressionSpec(latency_pairs=args.pairs)
    x = digits_x()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sf-gate-") as tmp:
        champion = export_champion(Path(tmp) / "champion.onnx")
        slower, width, ratio = calibrate(champion, Path(tmp), x)
        print(f"champion: {CHAMPION.arch} {CHAMPION.hidden} on {CHAMPION.input_shape}, untrained (seed 0); slower "
              f"challenger: + a {EXTRA_IN}x{width} MatMul, true ratio x{ratio:.3f} over "
              f"{CALIBRATION_PAIRS} interleaved pairs, logits bit-identical: {identical_outputs(champion, slower, x)}")
        aa = latency_trials(champion, champion, x, regression, args.trials)
        slow = latency_trials(champion, slower, x, regression, args.trials)
    worse = accuracy_trials(one_point_worse, regression, args.trials)
    equal = {q: accuracy_trials(equally_accurate(q), regression, args.trials) for q in (DISCORDANCE, 0.01)}
    print(f"{os.cpu_count()} CPU cores, ONNX Runtime threads={MEASURE.threads}, {regression.latency_pairs} pairs, "
          f"{regression.bootstrap} resamples, {regression.confidence:.0%} intervals; "
          f"took {time.perf_counter() - t0:.0f} s")
    print_table([
        row("A/A (same file, two sessions)", aa, "pass", 0.99, "both"),
        row(f"20% slower (true x{ratio:.2f})", slow, "blocked", 0.95, "latency"),
        row(f"1 pt worse, {TEST_SAMPLES} samples, ~{DISCORDANCE:.0%} discordant", worse, "blocked", 0.95, "accuracy"),
        row(f"equal accuracy, {DISCORDANCE:.0%} discordant", equal[DISCORDANCE], "blocked", None, "accuracy"),
        row("equal accuracy, 1% discordant", equal[0.01], "blocked", None, "accuracy"),
    ])
    highs = [checks[1]["high"] for checks in aa]
    print(f"A/A latency interval high end: median x{np.median(highs):.3f}, 99th percentile "
          f"x{np.quantile(highs, 0.99):.3f}, max x{max(highs):.3f} (limit x{1 + regression.max_latency_increase:.2f})")


if __name__ == "__main__":
    main()
