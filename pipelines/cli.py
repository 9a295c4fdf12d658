"""`squeezeflow`: run the lifecycle job, run one stage (dvc.yaml's command), regenerate dvc.yaml, open the UIs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from squeezeflow.io import write_text

DAGSTER_YAML = """\
# Written by squeezeflow on first use. Runs share one workspace (and DVC's repo lock): one run at a time.
telemetry:
  enabled: false
nux:
  enabled: false  # the "join the community" modal would cover the UI on a fresh browser profile
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
"""


def setup_env(root: Path) -> Path:
    """Defaults that keep all state inside the workspace and every service quiet and offline."""
    state = root / ".squeezeflow"
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(state / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        write_text(home / "dagster.yaml", DAGSTER_YAML)  # atomic: two first runs may both get here
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
                 "DAGSTER_DISABLE_TELEMETRY": "true", "SQUEEZEFLOW_ROOT": str(root),
                 "MLFLOW_LOGGING_LEVEL": "WARNING"}.items():  # no "Creating initial MLflow database tables" chatter
        os.environ.setdefault(k, v)
    import logging

    # also if mlflow was imported before
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    return home


def _overrides(args) -> list[str]:
    items = list(args.set or [])
    if args.npz:
        items += ["dataset.name=npz", f"dataset.path={Path(args.npz).resolve()}"]
    elif getattr(args, "data", None):
        path = Path(args.data).resolve()
        kind = "image_folder" if path.is_dir() else "npz" if path.suffix.lower() == ".npz" else "table"
        items += [f"dataset.name={kind}", f"dataset.path={path}"]
    elif args.dataset:
        items.append(f"dataset.name={args.dataset}")
    if args.recipe:
        recipe = Path(args.recipe)
        items.append(f"compress.recipe={recipe.resolve() if recipe.suffix in ('.yaml', '.yml') else args.recipe}")
    return items


def cmd_run(args) -> int:
    from squeezeflow.config import apply_overrides, parse_override
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.workspace import Workspace

    root = Path(args.root).resolve()
    setup_env(root)
    ws = Workspace(root)
    overrides = _overrides(args)
    parsed: dict = {}
    try:  # bad params, targets, recipes or data fail here, before any run starts
        parsed = dict(parse_override(o) for o in overrides)
        params = apply_overrides(ws.params(), parsed, source="command line")
        flag = "--npz" if args.npz else "--data" if args.data else None
        targets = ws.validate(params, args.target, source=flag, read_data=True)
    except SqueezeflowInputError as exc:
        if exc.source == str(ws.params_path) and exc.field in parsed:  # name where the value came from
            flag = "--recipe" if args.recipe and exc.field == "compress.recipe" else "command line"
            exc = SqueezeflowInputError(flag, exc.field, exc.value, exc.problem)
        elif args.recipe and exc.field == "compress.recipe" and exc.source == "params.yaml":
            exc = SqueezeflowInputError("--recipe", exc.field, exc.value, exc.problem)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.runner import run_lifecycle

    return run_lifecycle(ws, overrides, targets, tracking_uri=args.tracking_uri, verbose=args.verbose,
                         named=bool(args.target))


def cmd_init(args) -> int:
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.scaffold import init_workspace

    try:
        made = init_workspace(Path(args.folder), args.model, args.data, args.target or ["cpu-fp32", "cpu-int8"],
                              args.checkpoint, train=not args.no_train, force=args.force)
    except SqueezeflowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in made.files:
        print(f"wrote {path.relative_to(made.root)}")
    print(f"checked: {made.summary}")
    print(f"next: squeezeflow --root {made.root} run    (or ./sf --root {made.root} run)")
    return 0


def cmd_sweep(args) -> int:
    from squeezeflow.config import apply_overrides, parse_override
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.workspace import Workspace

    root = Path(args.root).resolve()
    setup_env(root)
    ws = Workspace(root)
    overrides = list(args.set or []) + ([f"dataset.name={args.dataset}"] if args.dataset else [])
    try:
        ws.validate(apply_overrides(ws.params(), dict(parse_override(o) for o in overrides), "command line"))
    except SqueezeflowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from pipelines.runner import run_sweep

    return run_sweep(ws, overrides, tracking_uri=args.tracking_uri, verbose=args.verbose)


def cmd_stage(args) -> int:
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.lifecycle import run_stage_locally
    from squeezeflow.runlock import WorkspaceBusy, workspace_lock
    from squeezeflow.workspace import Workspace

    ws = Workspace(Path(args.root).resolve())
    t0 = time.perf_counter()
    try:  # bad input (a target profile, params, a corrupt checkpoint or ONNX file): one line, no stack trace
        ws.graph_for(ws.recorded_params())  # the graph DVC was given
        if args.name not in ws.stages:
            print(f"error: unknown stage '{args.name}'; known: {sorted(ws.stages)}", file=sys.stderr)
            return 2
        # under `dvc repro`, which holds DVC's repo lock: waiting for a run that needs DVC could deadlock
        params = ws.recorded_params()
        ws.validate(params)
        with workspace_lock(ws.state_dir / "locks", f"squeezeflow stage {args.name}", wait=False):
            metrics = run_stage_locally(ws, args.name, params)
    except (WorkspaceBusy, SqueezeflowInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name}: done in {time.perf_counter() - t0:.1f}s {metrics}")
    return 0


def cmd_dvc_yaml(args) -> int:
    from squeezeflow.workspace import Workspace

    ws = Workspace(Path(args.root).resolve())
    ws.prepare()
    print(f"wrote {ws.dvc_yaml_path}")
    return 0


def cmd_gc(args) -> int:
    from pipelines.runner import hold_workspace
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.lifecycle import Lifecycle
    from squeezeflow.workspace import Workspace

    ws = Workspace(Path(args.root).resolve())
    lc = Lifecycle(ws)
    try:
        with hold_workspace(ws, "squeezeflow gc"):
            removed = lc.collect_garbage(args.keep, args.dry_run)
    except SqueezeflowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in removed.lines(args.dry_run):
        print(f"gc: {line}")
    return 0


def cmd_lineage(args) -> int:
    import json

    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.tracking.lineage import build_lineage, open_client, render_text
    from squeezeflow.workspace import Workspace

    ws = Workspace(Path(args.root).resolve())
    # as squeezeflow.lifecycle.default_tracking_uri (not imported: it pulls in torch)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ws.state_dir / 'mlflow.db'}"
    try:
        lineage = build_lineage(open_client(uri), args.uri, args.ui_url)
    except SqueezeflowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.card:
        from squeezeflow.tracking.model_card import read_card

        card, text = lineage.link("model-card"), read_card(open_client(uri), lineage)
        if text is None:
            print(f"error: {lineage.uri}: field 'model card' = None: {card.summary}", file=sys.stderr)
            return 1
        print(text, end="")
        return 0
    print(json.dumps(lineage.to_dict(), indent=2) if args.json else render_text(lineage), end="\n" if args.json else "")
    return 0


def cmd_ui(args) -> int:
    root = Path(args.root).resolve()
    setup_env(root)
    bin_dir = Path(sys.executable).parent
    if args.which == "dagster":
        argv = [str(bin_dir / "dagster"), "dev", "-m", "pipelines.definitions", "-h", args.host,
                "-p", str(args.port or 3000)]
    else:
        db = root / ".squeezeflow" / "mlflow.db"
        argv = [str(bin_dir / "mlflow"), "ui", "--backend-store-uri", os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{db}"),
                "--host", args.host, "--port", str(args.port or 5000), "--workers", "1"]
    from squeezeflow.redact import redact

    print("$ " + " ".join(redact(a) for a in argv), flush=True)  # a tracking URI's password is not shown
    os.chdir(root)
    os.execv(argv[0], argv)


def cmd_stack(args) -> int:
    from squeezeflow.errors import SqueezeflowInputError
    from squeezeflow.stack import SERVICES, Stack, StackError

    stack = Stack(Path(args.root).resolve(), workers=args.workers)
    try:
        if args.action == "up":
            lines = stack.up(tuple(args.services or SERVICES))
        else:
            lines = stack.status() if args.action == "status" else stack.down(purge=args.purge)
    except (StackError, SqueezeflowInputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def parser() -> argparse.ArgumentParser:
    from squeezeflow.workspace import default_root

    p = argparse.ArgumentParser(prog="squeezeflow", description=__doc__)
    p.add_argument("--root", default=str(default_root()), help="workspace folder (a DVC repo); default: the project")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the whole lifecycle job (train big -> compress -> ... -> promote)")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="built-in dataset: digits (default) or mnist1d")
    src.add_argument("--npz", help="your own .npz holding x (float, N x ...) and y (int labels 0..C-1)")
    src.add_argument("--data", help="your own data: a .csv/.parquet table (label column 'label'), a folder with one "
                     "subfolder of images per class, or an .npz")
    r.add_argument("--recipe", help="compression recipe: a name in recipes/ (default: params.yaml's compress.recipe) "
                   "or a .yaml path")
    r.add_argument("--target", action="append", help="only this target (repeatable); default: all in device_targets/")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override params.yaml, e.g. teacher.train.epochs=5")
    r.add_argument("--tracking-uri",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in .squeezeflow/)")
    r.add_argument("--verbose", action="store_true", help="Dagster's log and full stack traces on the terminal")
    r.set_defaults(fn=cmd_run)
    i = sub.add_parser("init", help="a workspace for your own model and data: params.yaml, targets, an editable "
                       "recipe; checked before anything is left behind")
    i.add_argument("folder", nargs="?", default=".", help="the workspace folder (default: here)")
    i.add_argument("--model", help="'my_pkg.models:build' (importable from the folder), 'torchvision:resnet18', a "
                   "Hugging Face model directory (save_pretrained), or an exported model.onnx (a frozen teacher); "
                   "default: squeezeflow's built-in models")
    i.add_argument("--data", required=True, help="a folder of images per class, a .csv/.parquet table, an .npz, or "
                   "'my_pkg.data:load'")
    i.add_argument("--checkpoint", help="the model's trained state dict (torch.save(model.state_dict()))")
    i.add_argument("--no-train", action="store_true", help="compress the checkpoint's model as it is")
    i.add_argument("--target", action="append", help="a shipped device target (repeatable); default: cpu-fp32, "
                   "cpu-int8")
    i.add_argument("--force", action="store_true", help="overwrite an existing params.yaml")
    i.set_defaults(fn=cmd_init)
    w = sub.add_parser("sweep", help="train big, then compress: teacher sizes x recipes (params.yaml: sweep); the "
                       "Pareto front as a table and a plot")
    w.add_argument("--dataset", help="built-in dataset: digits (default) or mnist1d")
    w.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. sweep.teacher_scales=[0.5,1]")
    w.add_argument("--tracking-uri", help="MLflow tracking URI")
    w.add_argument("--verbose", action="store_true", help="Dagster's log and full stack traces on the terminal")
    w.set_defaults(fn=cmd_sweep)
    s = sub.add_parser("stage", help="run one stage in place (the command dvc.yaml gives `dvc repro`)")
    s.add_argument("name")
    s.set_defaults(fn=cmd_stage)
    d = sub.add_parser("dvc-yaml", help="regenerate dvc.yaml from the stage registry and device_targets/")
    d.set_defaults(fn=cmd_dvc_yaml)
    lin = sub.add_parser("lineage", help="the audit chain of a registered model version: data, teacher run, recipe, "
                         "stage runs, gate report, promotion, git commit (MLflow run ids and UI links)")
    lin.add_argument("uri", help="models:/NAME/VERSION, models:/NAME@champion or models:/NAME@challenger")
    lin.add_argument("--json", action="store_true", help="the same chain as JSON")
    lin.add_argument("--card", action="store_true", help="print the version's model card (Markdown) instead")
    lin.add_argument("--root", default=argparse.SUPPRESS, help="workspace folder (also accepted before 'lineage')")
    lin.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or SQLite in "
                     ".squeezeflow/)")
    lin.add_argument("--ui-url", default="http://127.0.0.1:5000", help="MLflow UI base of the links (./sf ui mlflow)")
    lin.set_defaults(fn=cmd_lineage)
    g = sub.add_parser("gc", help="retention: delete old registered versions nobody can deploy again and DVC "
                       "objects nothing names (never the champion, the challenger or an earlier champion)")
    g.add_argument("--keep", type=int, help="newest versions kept per model (default: params.yaml "
                   "retention.keep_versions)")
    g.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    g.set_defaults(fn=cmd_gc)
    u = sub.add_parser("ui", help="open the Dagster or MLflow UI on this workspace")
    u.add_argument("which", choices=["dagster", "mlflow"])
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int)
    u.set_defaults(fn=cmd_ui)
    st = sub.add_parser("stack", help="the shared deployment on this machine, on loopback: Postgres, the MLflow "
                        "server, Redis and Celery workers, the Dagster instance on Postgres with its web server and "
                        "daemon (runs launched there fan out over the workers)")
    st.add_argument("action", choices=["up", "status", "down"])
    st.add_argument("--services", nargs="+", help="up: only these (and what they need); default: all")
    st.add_argument("--workers", type=int, default=2, help="up: Celery worker processes, one step at a time each, "
                    "each with its own step workspace (default 2)")
    st.add_argument("--purge", action="store_true", help="down: also delete the Postgres cluster's data")
    st.set_defaults(fn=cmd_stack)
    from squeezeflow.runtimes import agent

    a = sub.add_parser("agent", help="serve this device's runtimes to squeezeflow runs elsewhere: measures models "
                       "sent to it (a target's `device: {agent: URL}`)")
    agent.add_arguments(a)
    a.set_defaults(fn=agent.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
