"""The UI path end to end: a real `dagster dev` (webserver + daemon, QueuedRunCoordinator), runs launched the way the
launchpad launches them (GraphQL), started by the daemon in their own process; then a real headless Chromium drives
the UI itself: the asset graph, and a promotion from the `promote` job's launchpad.

Screenshots: on a browser-test failure they are saved to $SQUEEZEFLOW_SCREENSHOTS (default: pytest's tmp path) and
the failure message names the folder. With SQUEEZEFLOW_DOC_SCREENSHOTS=<dir>, the asset graph and the finished
promotion run are always saved there (docs/img/ holds the committed ones)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.cli import DAGSTER_YAML
from tests.conftest import make_workspace

pytestmark = pytest.mark.slow

MODEL = "squeezeflow-digits-cpu-fp32"
GPU_TARGET = {"name": "gpu-trt", "runtime": "tensorrt", "build": {"builder": "tensorrt", "precision": "fp16"},
              "measure": {"iterations": 20}, "budgets": {"max_accuracy_drop": 40.0, "max_latency_p95_ms": 50.0,
                                                         "max_model_bytes": 2_000_000}}
# Debian's chromium and chromium-driver (./sf test installs them as root); Selenium Manager cannot download here.
CHROMIUM = Path(os.environ.get("SQUEEZEFLOW_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("SQUEEZEFLOW_CHROMEDRIVER", "/usr/bin/chromedriver"))


# --- dagster dev ---------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    def __init__(self, url: str, ws: Path, home: Path, log: Path, proc: subprocess.Popen):
        self.url, self.ws, self.home, self.log, self.proc = url, ws, home, log, proc
        self.location = self.repository = ""

    def log_tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.load(resp)
        assert not out.get("errors"), out["errors"]
        return out["data"]

    def mlflow(self) -> MlflowClient:
        uri = f"sqlite:///{self.ws / '.squeezeflow' / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}"""


def _wait_until_loaded(dev: DagsterDev, timeout: float = 150) -> None:
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        if dev.proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {dev.proc.returncode}:\n{dev.log_tail()}")
        try:
            urllib.request.urlopen(f"{dev.url}/server_info", timeout=5).read()
            ws = dev.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = repr(exc)
            time.sleep(0.5)
            continue
        assert ws["__typename"] == "Workspace", ws
        (entry,) = ws["locationEntries"]
        loc = entry["locationOrLoadError"]
        if loc and loc["__typename"] == "PythonError":
            pytest.fail(f"code location {entry['name']} failed to load in dagster dev:\n"
                        f"{loc['message']}\n{loc['stack']}")
        if entry["loadStatus"] == "LOADED" and loc and loc["__typename"] == "RepositoryLocation":
            (repo,) = loc["repositories"]
            dev.location, dev.repository = loc["name"], repo["name"]
            return
        last = f"location {entry['name']}: {entry['loadStatus']}"
        time.sleep(0.5)
    pytest.fail(f"dagster dev not ready after {timeout}s ({last}):\n{dev.log_tail()}")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    base = tmp_path_factory.mktemp("ui")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)  # telemetry and nux off, QueuedRunCoordinator
    ws = make_workspace(base / "ws", targets=("cpu-fp32",))
    # TINY sweeps at x1 only: its points are the main line's own, so the graph (and the docs' picture of it) shows the
    # lifecycle and one pareto_sweep node.
    spec_path = ws / "device_targets" / "cpu-fp32.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["promotion"] = "manual"  # a passing candidate becomes `challenger`; a person promotes it
    spec_path.write_text(yaml.safe_dump(spec))
    # A GPU target: on a machine without TensorRT and a GPU it is skipped with its reason, and the run a Success.
    (ws / "device_targets" / "gpu-trt.yaml").write_text(yaml.safe_dump(GPU_TARGET))

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # SQLite in the workspace
    env.update(DAGSTER_HOME=str(home), SQUEEZEFLOW_ROOT=str(ws), DVC_SITE_CACHE_DIR=str(base / "dvc_site"),
               MLFLOW_DISABLE_TELEMETRY="true", GX_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1",
               DAGSTER_DISABLE_TELEMETRY="true")
    port = _free_port()
    log = base / "dagster-dev.log"
    dagster = Path(sys.executable).parent / "dagster"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(dagster), "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1",
                                 "-p", str(port)],
                                cwd=ws, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    dev = DagsterDev(f"http://127.0.0.1:{port}", ws, home, log, proc)
    try:
        _wait_until_loaded(dev)
        yield dev
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """dagster dev, its webserver, daemon, code server and any run it started: the whole process group."""
    pgid = proc.pid  # start_new_session: the group is the child's own pid
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # dagster dev may take 15 s to stop on its own
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; give the rest of the group a moment, then make sure
        time.sleep(1)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break


# --- runs through GraphQL, as the launchpad launches them -----------------------------------------------------------

LAUNCH = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id runId status pipelineName } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}"""

RUN = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status pipelineName tags { key value } }
    ... on PythonError { message }
  }
}"""

LOGS = """
query RunLogs($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message level }
        ... on ExecutionStepFailureEvent { stepKey error { message stack } }
        ... on RunFailureEvent { pipelineName }
      }
    }
    ... on PythonError { message }
  }
}"""

CHECKS = """
query GateChecks($key: AssetKeyInput!) {
  assetCheckExecutions(assetKey: $key, checkName: "gate", limit: 1) {
    runId status evaluation { success severity description }
  }
}"""

LATEST = """
query Latest($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 1) { runId metadataEntries {
      label
      ... on TextMetadataEntry { text }
      ... on MarkdownMetadataEntry { mdStr }
    } } }
  }
}"""

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def launch(dev: DagsterDev, job: str, run_config_yaml: str) -> dict:
    """The launchpad's mutation: runConfigData is the editor's YAML text."""
    params = {
        "selector": {"repositoryLocationName": dev.location, "repositoryName": dev.repository, "pipelineName": job},
        "runConfigData": run_config_yaml,
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "squeezeflow/trigger", "value": "test-ui"}]},
    }
    result = dev.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]


def run_events(dev: DagsterDev, run_id: str) -> list[dict]:
    events, cursor = [], None
    while True:
        conn = dev.graphql(LOGS, {"runId": run_id, "after": cursor})["logsForRun"]
        assert conn["__typename"] == "EventConnection", conn
        events += conn["events"]
        cursor = conn["cursor"]
        if not conn["hasMore"]:
            return events


def failure_report(dev: DagsterDev, run_id: str) -> str:
    lines = []
    for e in run_events(dev, run_id):
        if (e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent", "EngineEvent")
                or e.get("level") == "ERROR"):
            lines.append(f"{e['__typename']}: {e.get('message')}")
            if e.get("error"):
                lines.append(f"  {e['error']['message']}\n{e['error']['stack']}")
    return "\n".join(lines[-40:])


def wait_for_run(dev: DagsterDev, run_id: str, timeout: float = 240) -> tuple[str, list[str]]:
    """Poll until the run ends; returns its final status and every status seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = dev.graphql(RUN, {"runId": run_id})["runOrError"]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in FINISHED:
            return status, seen
        time.sleep(1)
    pytest.fail(f"run {run_id} not finished after {timeout}s (statuses {seen}):\n{failure_report(dev, run_id)}\n"
                f"dagster dev log:\n{dev.log_tail()}")


def assert_succeeded(dev: DagsterDev, run_id: str, status: str) -> None:
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{failure_report(dev, run_id)}"


@pytest.fixture(scope="module")
def lifecycle_run(dagster_dev):
    """The `lifecycle` job launched as the launchpad launches it, with a config override; waited for."""
    dev = dagster_dev
    run = launch(dev, "lifecycle", "resources:\n  squeezeflow:\n    config:\n      overrides: [seed=3]\n")
    status, seen = wait_for_run(dev, run["runId"])
    return run, status, seen


@pytest.mark.timeout(420)
def test_lifecycle_launched_from_the_launchpad_path_registers_a_challenger(dagster_dev, lifecycle_run):
    dev, (run, status, seen) = dagster_dev, lifecycle_run
    run_id = run["runId"]
    # QueuedRunCoordinator: the webserver only queues it; the daemon dequeues it and starts it in its own process.
    assert run["status"] == "QUEUED", run
    assert_succeeded(dev, run_id, status)
    assert seen[0] == "QUEUED" and "SUCCESS" == seen[-1], seen
    events = run_events(dev, run_id)
    types = [e["__typename"] for e in events]
    # enqueued by the webserver, marked starting by the daemon's run coordinator, then started in a new process
    order = [types.index(t) for t in ("RunEnqueuedEvent", "RunStartingEvent", "RunStartEvent")]
    assert order == sorted(order), types
    started = [e["message"] for e in events if (e.get("message") or "").startswith("Started process for run")]
    assert started, types
    pid = int(started[0].split("pid: ")[1].rstrip(")."))
    assert pid != dev.proc.pid  # its own process, not dagster dev's

    c = dev.mlflow()
    exp = c.get_experiment_by_name("squeezeflow")
    runs = c.search_runs([exp.experiment_id], f"tags.`squeezeflow.run_key` = '{run_id}'")
    stages = {r.data.tags["squeezeflow.stage"] for r in runs}
    assert {"pipeline", "dataset", "teacher", "exported-tiny", "build-cpu-fp32", "validate-cpu-fp32"} <= stages, stages
    (parent,) = [r for r in runs if r.data.tags["squeezeflow.stage"] == "pipeline"]
    assert parent.data.params["seed"] == "3"  # the launchpad's config override reached the daemon's run
    challenger = c.get_model_version_by_alias(MODEL, "challenger")
    assert challenger.tags["squeezeflow.dagster_run_id"] == run_id
    assert "champion" not in c.get_registered_model(MODEL).aliases  # manual: nobody promoted it yet


@pytest.mark.timeout(120)
def test_the_run_is_a_success_and_the_gpu_target_skipped_with_its_reason_in_graphql(dagster_dev, lifecycle_run):
    """What the Runs page and the asset checks show, read through the webserver's GraphQL API."""
    from squeezeflow.runtimes.trt import unavailable

    dev, (run, _, _) = dagster_dev, lifecycle_run
    assert dev.graphql(RUN, {"runId": run["runId"]})["runOrError"]["status"] == "SUCCESS"
    [cpu] = dev.graphql(CHECKS, {"key": {"path": ["cpu_fp32", "candidate"]}})["assetCheckExecutions"]
    assert cpu["runId"] == run["runId"] and cpu["status"] == "SUCCEEDED" and cpu["evaluation"]["success"]
    [latest] = dev.graphql(LATEST, {"key": {"path": ["cpu_fp32", "promoted"]}})["assetOrError"]["assetMaterializations"]
    meta = {e["label"]: e.get("mdStr") or e.get("text") for e in latest["metadataEntries"]}
    assert latest["runId"] == run["runId"] and meta["model_card"].startswith(f"# Model card: {MODEL} v")
    assert "## Promotion history" in meta["model_card"] and meta["model_card_uri"].endswith("/model_card.md")
    if unavailable() is None:
        pytest.skip("TensorRT is available here: the GPU target is built and measured instead")
    [gpu] = dev.graphql(CHECKS, {"key": {"path": ["gpu_trt", "candidate"]}})["assetCheckExecutions"]
    assert gpu["runId"] == run["runId"] and gpu["status"] == "FAILED"
    assert gpu["evaluation"]["severity"] == "WARN"
    assert gpu["evaluation"]["description"] == f"skipped: unavailable: {unavailable()}"


# --- a real browser ---------------------------------------------------------------------------------------------------

def _browser_missing() -> str:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    return ", ".join(missing)


@pytest.fixture(scope="module")
def browser(request, tmp_path_factory):
    missing = _browser_missing()  # before dagster dev starts: a skip costs nothing
    if missing:
        msg = (f"browser test needs {missing}: as root, `apt-get install -y chromium chromium-driver` "
               "(./sf test does it)")
        if os.environ.get("SQUEEZEFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " [SQUEEZEFLOW_REQUIRE_BROWSER=1]", pytrace=False)
        pytest.skip(msg)
    dagster_dev = request.getfixturevalue("dagster_dev")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000",
                "--no-first-run", "--disable-extensions", "--disable-background-networking", "--mute-audio",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(dagster_dev.log.parent / "chromedriver.log"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Shots:
    """Screenshots: on failure (always), and the documentation ones when SQUEEZEFLOW_DOC_SCREENSHOTS is set."""

    def __init__(self, driver, failure_dir: Path):
        self.driver, self.failure_dir = driver, failure_dir
        doc = os.environ.get("SQUEEZEFLOW_DOC_SCREENSHOTS")
        self.doc_dir = Path(doc) if doc else None

    def doc(self, name: str) -> None:
        if self.doc_dir:
            self.doc_dir.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(self.doc_dir / name))

    @contextmanager
    def on_failure(self, step: str):
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, pytest.skip.Exception)):
                raise
            self.failure_dir.mkdir(parents=True, exist_ok=True)
            stem = self.failure_dir / step.replace(" ", "-")
            try:
                self.driver.save_screenshot(f"{stem}.png")
                Path(f"{stem}.html").write_text(self.driver.page_source)
            except Exception as shot_exc:  # the browser itself may be what broke
                Path(f"{stem}.txt").write_text(repr(shot_exc))
            raise AssertionError(f"browser step '{step}' failed at {self.driver.current_url}: {exc}\n"
                                 f"screenshot and page source: {stem}.png / .html") from exc


@pytest.fixture
def shots(browser, tmp_path):
    folder = Path(os.environ.get("SQUEEZEFLOW_SCREENSHOTS") or tmp_path / "screenshots")
    return Shots(browser, folder)


def _wait(driver, condition, timeout: float = 60, what: str = ""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition, what)


@pytest.mark.timeout(480)
def test_asset_graph_and_promotion_from_the_launchpad_in_a_browser(browser, shots, dagster_dev, lifecycle_run):
    dev, driver = dagster_dev, browser
    assert lifecycle_run[1] == "SUCCESS", "the lifecycle run failed: see the test above"
    c = dev.mlflow()
    challenger = c.get_model_version_by_alias(MODEL, "challenger")  # registered by the lifecycle run
    assert "champion" not in c.get_registered_model(MODEL).aliases

    with shots.on_failure("asset graph"):
        driver.set_window_size(1600, 1500)  # two target chains: room for the whole graph
        driver.get(f"{dev.url}/asset-groups")  # "Lineage": the global asset graph
        _wait(driver, lambda d: d.find_elements("xpath", "//input[@placeholder='Jump to…']"), what="the lineage page")
        # More room for the graph (nav and asset sidebar folded), then "Expand all groups" (its shortcut, Alt+E): the
        # groups (lifecycle, target_cpu_fp32, sweep) start folded.
        driver.find_element("xpath", "//button[.//*[normalize-space(text())='Hide navigation']]").click()
        driver.find_element("xpath", "//input[@placeholder='Jump to…']/following::button"
                                     "[.//*[@aria-label='panel_show_right']][1]").click()
        groups = _expand_all_groups(driver, ["dataset", "teacher", "exported", "build", "validated", "promoted"])
        assert {"dataset", "teacher", "compressed", "finetuned", "exported"} <= set(groups["lifecycle"]), groups
        (chain,) = [names for group, names in groups.items() if "cpu_fp32" in group]
        assert {"build", "validated", "promoted"} <= set(chain), groups
        time.sleep(1)  # the zoom-to-fit animation
        shots.doc("asset-graph.png")
        driver.set_window_size(1600, 1000)

    with shots.on_failure("runs page"):
        driver.get(f"{dev.url}/runs")
        _wait(driver, lambda d: lifecycle_run[0]["runId"][:8] in d.find_element("tag name", "body").text,
              what="the lifecycle run in the Runs page")
        short = lifecycle_run[0]["runId"][:8]
        row = _wait(driver, lambda d: d.find_elements(  # the run's row: the nearest box holding its id and launcher
            "xpath", f"//*[text()='{short}']/ancestor::*[contains(., 'Manually launched')][1]"),
            what="the run's row")[0]
        assert "Success" in row.text and "Failure" not in row.text, row.text
        shots.doc("runs-success.png")

    with shots.on_failure("gate check"):
        driver.get(f"{dev.url}/assets/cpu_fp32/candidate?view=checks")
        _wait(driver, lambda d: "gate" in d.find_element("tag name", "body").text and
              "Passed" in d.find_element("tag name", "body").text, what="the gate check, passed")
        _show_markdown(driver, "report", "Gate PASSED: cpu-fp32")
        shots.doc("gate-check.png")

    with shots.on_failure("model card"):
        driver.get(f"{dev.url}/assets/cpu_fp32/promoted")
        _wait(driver, lambda d: "model_card" in d.find_element("tag name", "body").text,
              what="the model card in the promoted asset's metadata")
        _show_markdown(driver, "model_card", f"Model card: {MODEL} v{challenger.version}")
        shots.doc("model-card-dagster.png")

    config = (f"ops:\n  promote_version:\n    config:\n      target: cpu-fp32\n"
              f"      version: \"{challenger.version}\"\n"
              "      reason: approved after review\n      promoted_by: alice\n      force: false\n")
    with shots.on_failure("launchpad"):
        driver.get(f"{dev.url}/locations/{dev.location}/jobs/promote/playground")
        _wait(driver, lambda d: d.execute_script("return !!document.querySelector('.CodeMirror')"),
              what="the launchpad's config editor")
        driver.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", config)
        shown = driver.execute_script("return document.querySelector('.CodeMirror').CodeMirror.getValue()")
        assert shown == config
        _wait(driver, lambda d: "promoted_by: alice" in d.find_element("css selector", ".CodeMirror").text,
              what="the editor showing the config")
        launch_button = _wait(driver, _enabled_button("Launch Run"), what="an enabled Launch Run button")
        launch_button.click()
        _wait(driver, lambda d: "/runs/" in d.current_url, what="the run page")
        run_id = driver.current_url.split("/runs/")[1].split("?")[0].split("/")[0]

    with shots.on_failure("promotion run"):
        status, _ = wait_for_run(dev, run_id, timeout=180)
        assert_succeeded(dev, run_id, status)
        _wait(driver, _run_page_shows_success, timeout=60, what="the run page showing success")
        shots.doc("promotion-run.png")

    champion = c.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == challenger.version
    run = dev.graphql(RUN, {"runId": run_id})["runOrError"]
    assert run["pipelineName"] == "promote"


def _expand_all_groups(driver, expected: list[str]) -> dict[str, list[str]]:
    """Alt+E, the graph's "Expand all groups" (a toggle: pressed again only while nothing is expanded yet)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    _wait(driver, lambda d: d.execute_script(GRAPH_GROUPS_JS), what="the asset graph's groups")
    for _ in range(3):
        if not any(driver.execute_script(GRAPH_GROUPS_JS).values()):
            ActionChains(driver).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
        try:
            return _wait(driver, _graph_groups(expected), timeout=10, what="every group expanded")
        except TimeoutException:
            continue
    return _wait(driver, _graph_groups(expected), timeout=1, what=f"the asset graph showing {expected}")


GRAPH_GROUPS_JS = """
const fos = [...document.querySelectorAll('svg foreignObject')];
const box = fo => ({x: +fo.getAttribute('x'), y: +fo.getAttribute('y'), w: +fo.getAttribute('width'),
                    h: +fo.getAttribute('height'),
                    text: (fo.firstElementChild ? fo.firstElementChild.innerText : fo.textContent).trim()});
const groups = fos.filter(fo => fo.classList.contains('group')).map(box);
const nodes = fos.filter(fo => !fo.classList.contains('group')).map(box).filter(n => n.text);
const out = {};
for (const g of groups) {
  out[g.text.split('\\n')[0]] = nodes.filter(n => n.x >= g.x && n.y >= g.y && n.x + n.w <= g.x + g.w
                                               && n.y + n.h <= g.y + g.h).map(n => n.text.split('\\n')[0]);
}
return out;
"""


def _graph_groups(expected: list[str]):
    """The rendered graph as {group name: asset names drawn inside its box}, once every expected name is drawn."""
    def check(driver):
        groups = driver.execute_script(GRAPH_GROUPS_JS)
        drawn = {n for names in groups.values() for n in names}
        return groups if set(expected) <= drawn else False
    return check


def _enabled_button(label: str):
    def find(driver):
        for b in driver.find_elements("xpath", f"//button[normalize-space(.)='{label}']"):
            if b.is_displayed() and b.is_enabled():
                return b
        return False
    return find


def _show_markdown(driver, key: str, heading: str) -> None:
    """Open a Markdown metadata entry ([Show Markdown] in its row) and wait for its dialog to show `heading`."""
    link = _wait(driver, lambda d: d.find_elements(
        "xpath", f"//tr[.//*[normalize-space(text())='{key}']]//*[contains(text(), 'Show Markdown')]"),
        what=f"the {key} entry's [Show Markdown]")[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    title = _wait(driver, lambda d: d.find_elements(
        "xpath", f"//*[@role='dialog']//*[contains(text(), '{heading}')]"), what=f"the dialog showing '{heading}'")[0]
    time.sleep(0.5)  # the dialog's fade-in (it focuses its Close button, scrolling to the end)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", title)
    time.sleep(0.3)


def _run_page_shows_success(driver):
    return "Success" in driver.find_element("tag name", "body").text
