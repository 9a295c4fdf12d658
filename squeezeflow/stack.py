"""The shared deployment on one machine, to try it (`squeezeflow stack up|status|down`): a Postgres cluster, an
MLflow tracking server on it with proxied artifacts, Redis and Celery workers (each with a step workspace of its
own, squeezeflow.fanout, and one DVC remote they share), and a Dagster instance on Postgres (`infra/dagster.yaml`),
its web server and daemon; runs launched there fan out over the workers (`SQUEEZEFLOW_EXECUTOR=celery`). Each
process `up` starts is recorded by pid in `.squeezeflow/stack/stack.json`; `down` stops those and nothing else.
Everything listens on 127.0.0.1 only.

Credentials: a random Postgres password made at the first `up`, kept in `.squeezeflow/stack/credentials.env`
(mode 0600) and handed to the processes that need it by environment, never on a command line (`ps` shows those)
nor in what `status` prints. A client of the stack needs `env()`: the Dagster instance's variables and
`MLFLOW_TRACKING_URI` (the server's URL; the server alone holds the database password)."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from squeezeflow.errors import SqueezeflowInputError
from squeezeflow.io import write_text
from squeezeflow.redact import redact

SERVICES = ("postgres", "redis", "mlflow", "celery-workers", "dagster-webserver", "dagster-daemon")
WORKER = "celery-worker-"  # + its number: each a service of its own
INFRA_DAGSTER_YAML = Path(__file__).resolve().parents[1] / "infra" / "dagster.yaml"
CELERY_CONFIG = INFRA_DAGSTER_YAML.parent / "celery"  # dagster_celery_config.py: the workers' settings
DB_USER = "squeezeflow"


class StackError(RuntimeError):
    """A service did not come up (its log says why)."""


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    url: str
    log: str
    started: int | None = None  # the process's start time (clock ticks after boot): a reused pid is not ours

    def alive(self) -> bool:
        """Running, and the very process `up` started (after a reboot its pid may name another one)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # Postgres runs as another user when we are not root
            pass
        stat = _proc_stat(self.pid)
        return bool(stat) and stat[0] != "Z" and (self.started is None or int(stat[19]) == self.started)


def _proc_stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: [0] the state, [19] the start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, proc: subprocess.Popen, log: Path, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}: see {log}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise StackError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g} s: see {log}")


class Stack:
    """The stack of one workspace: its state under `<root>/.squeezeflow/stack`."""

    def __init__(self, root: Path, workers: int = 2):
        self.root = Path(root).resolve()
        self.workers = workers
        self.dir = self.root / ".squeezeflow" / "stack"
        self.state_path = self.dir / "stack.json"
        self.credentials_path = self.dir / "credentials.env"

    # -- state ---------------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {"ports": {}, "services": {}}

    def _save(self, state: dict) -> None:
        write_text(self.state_path, json.dumps(state, indent=2) + "\n")  # in start order: down reverses it

    def services(self) -> dict[str, Service]:
        return {n: Service(n, **s) for n, s in self._state()["services"].items()}

    def _port(self, state: dict, name: str) -> int:
        port = state["ports"].get(name)
        if port is None or not _port_free(port):
            port = state["ports"][name] = free_port()
        return port

    def _password(self) -> str:
        if not self.credentials_path.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.credentials_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"DAGSTER_PG_PASSWORD={secrets.token_urlsafe(24)}\n")
        line = next(x for x in self.credentials_path.read_text().splitlines() if x.startswith("DAGSTER_PG_PASSWORD="))
        return line.split("=", 1)[1]

    # -- what a client needs -------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of a process that uses the stack: the Dagster instance on Postgres, the MLflow server."""
        ports = self._state()["ports"]
        if "postgres" not in ports or "mlflow" not in ports:
            raise StackError(f"the stack of {self.root} was never started: run `squeezeflow stack up`")
        env = {"DAGSTER_HOME": str(self.dir / "dagster"), "DAGSTER_PG_HOST": "127.0.0.1",
               "DAGSTER_PG_PORT": str(ports["postgres"]), "DAGSTER_PG_USER": DB_USER,
               "DAGSTER_PG_PASSWORD": self._password(), "DAGSTER_PG_DB": "dagster",
               "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
               "SQUEEZEFLOW_DVC_REMOTE": str(self.dir / "dvc-remote")}
        if "redis" in ports:  # runs launched on this instance fan out over the Celery workers
            env |= {"SQUEEZEFLOW_EXECUTOR": "celery",
                    "SQUEEZEFLOW_CELERY_BROKER": f"redis://127.0.0.1:{ports['redis']}/0",
                    "SQUEEZEFLOW_CELERY_BACKEND": f"redis://127.0.0.1:{ports['redis']}/1"}
        return env

    # -- up / status / down --------------------------------------------------------------------------------------
    def up(self, services: tuple[str, ...] = SERVICES) -> list[str]:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise SqueezeflowInputError("squeezeflow stack up", "--services", unknown, f"known: {list(SERVICES)}")
        dagster = any(s.startswith("dagster") for s in services)
        needed = set(services) | {"postgres"} | ({"mlflow"} if dagster else set())
        needed |= {"redis", "mlflow"} if "celery-workers" in needed else set()
        self.dir.mkdir(parents=True, exist_ok=True)
        state, running = self._state(), self.services()
        for name in (s for s in SERVICES if s in needed):  # each after what it needs
            if name == "celery-workers":
                self._start_celery_workers(state, running)
                continue
            if name in running and running[name].alive():
                continue
            getattr(self, "_start_" + name.replace("-", "_"))(state)  # recorded as soon as it is spawned
        if "mlflow" in state["services"]:
            self._write_client_env()
        return self.status()

    def _dagster_home(self) -> Path:
        """The shared instance's home: infra/dagster.yaml, every value from the environment (no secret in it)."""
        home = self.dir / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(INFRA_DAGSTER_YAML, home / "dagster.yaml")
        return home

    def _write_client_env(self) -> None:
        """`client.env` (mode 0600: it holds the Dagster instance's password) for `set -a; . client.env`."""
        self._dagster_home()
        path = self.dir / "client.env"
        tmp = path.with_name(f".client.env.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in self.env().items()))
        os.replace(tmp, path)

    def status(self) -> list[str]:
        lines = []
        for name, svc in self.services().items():
            lines.append(f"{name:<18} {'running' if svc.alive() else 'STOPPED':<8} pid {svc.pid:<7} "
                         f"{redact(svc.url):<40} log {svc.log}")
        if not lines:
            return [f"no stack for {self.root} (start it: squeezeflow stack up)"]
        return lines + [f"to use it: set -a; . {self.dir / 'client.env'}; set +a   (then ./sf run ...)"]

    def down(self, purge: bool = False) -> list[str]:
        """Stop what `up` started, newest first (the Dagster processes before the stores they write to). `purge`:
        then delete the Postgres cluster's data too (the next `up` starts from an empty one)."""
        state, lines = self._state(), []
        for name in reversed(list(state["services"])):
            svc = Service(name, **state["services"][name])
            if svc.alive():
                # Postgres's "fast" shutdown is SIGINT; the Python servers stop cleanly on SIGTERM
                _signal_group(svc.pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
                if not _wait_gone(svc, 30):
                    _signal_group(svc.pid, signal.SIGKILL)
                    _wait_gone(svc, 10)
                lines.append(f"{name:<18} stopped (pid {svc.pid})")
            else:
                lines.append(f"{name:<18} was not running")
            del state["services"][name]
            self._save(state)
        if purge and state.get("pg_data") and not state["services"]:
            data = Path(state.pop("pg_data"))
            # a cluster of its own under /tmp (run as another user) goes with its folder
            shutil.rmtree(data.parent if data.parent.name.startswith("squeezeflow-stack-") else data,
                          ignore_errors=True)
            self._save(state)
            lines.append(f"{'postgres':<18} data deleted ({data})")
        return lines or [f"no stack running for {self.root}"]

    # -- the services --------------------------------------------------------------------------------------------
    def _spawn(self, state: dict, name: str, url: str, argv: list[str], env: dict,
               user: str | None = None) -> tuple[subprocess.Popen, Path]:
        """Start a service in its own session, logging to logs/<name>.log, and record it at once: a service that
        then fails to come up is still stopped by `down`."""
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            kwargs = {"user": user} if user else {}
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=self.root, start_new_session=True, **kwargs)
        stat = _proc_stat(proc.pid)
        state["services"][name] = {"pid": proc.pid, "url": url, "log": str(log),
                                   "started": int(stat[19]) if stat else None}
        self._save(state)
        return proc, log

    def _start_postgres(self, state: dict) -> None:
        initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
        user = _run_as()
        data = self._pg_data(state, user)
        port = self._port(state, "postgres")
        if not (data / "PG_VERSION").exists():
            pwfile = data.parent / "pwfile"
            pwfile.write_text(self._password() + "\n")
            _chown(pwfile, user)
            try:
                done = subprocess.run([initdb, "-D", str(data), "-U", DB_USER, "--pwfile", str(pwfile), "-E", "UTF8",
                                       "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--no-instructions"],
                                      capture_output=True, text=True, user=user, cwd=data.parent)
            finally:
                pwfile.unlink()
            if done.returncode:
                raise StackError(f"initdb failed: {done.stderr.strip()[-2000:]}")
        proc, log = self._spawn(state, "postgres", f"postgresql://{DB_USER}@127.0.0.1:{port}",
                                [postgres, "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(data.parent)],
                                _base_env(), user)
        _wait_port(port, 60, proc, log, "postgres")
        self._create_databases(port)

    def _pg_data(self, state: dict, user: str | None) -> Path:
        """Postgres refuses to run as root: as root it runs as `user`, its data in a folder of its own under /tmp
        (the workspace's parents may be closed to that user), made once per stack and recorded in its state."""
        if user is None:
            data = self.dir / "postgres" / "data"
        elif state.get("pg_data"):
            data = Path(state["pg_data"])
        else:
            import tempfile

            data = Path(tempfile.mkdtemp(prefix="squeezeflow-stack-", dir="/tmp")) / "data"
        data.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _chown(data.parent, user)
        state["pg_data"] = str(data)
        return data

    def _create_databases(self, port: int) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=DB_USER, password=self._password(),
                                    dbname="postgres", connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise StackError(f"postgres on port {port}: {str(exc).strip()} (its data: {self._state().get('pg_data')})"
                             ) from exc
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with conn.cursor() as cur:
                for db in ("dagster", "mlflow"):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{db}"')
        finally:
            conn.close()

    def _start_mlflow(self, state: dict) -> None:
        port, pg = self._port(state, "mlflow"), state["ports"]["postgres"]
        artifacts = self.dir / "mlflow-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env = {**_base_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               # by environment, not argv: the password stays out of `ps`
               "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://{DB_USER}:{self._password()}@127.0.0.1:{pg}/mlflow"}
        argv = [_bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--artifacts-destination", str(artifacts), "--serve-artifacts"]
        proc, log = self._spawn(state, "mlflow", f"http://127.0.0.1:{port}", argv, env)
        _wait_port(port, 120, proc, log, "mlflow")

    def _start_redis(self, state: dict) -> None:
        port, data = self._port(state, "redis"), self.dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", "",
                "--appendonly", "no", "--protected-mode", "yes"]
        proc, log = self._spawn(state, "redis", f"redis://127.0.0.1:{port}", argv, _base_env())
        _wait_port(port, 30, proc, log, "redis")

    def _start_celery_workers(self, state: dict, running: dict[str, Service]) -> None:
        """N Celery worker processes, one step at a time each, each with a step workspace of its own under
        workers/<n> (squeezeflow.fanout); their settings: infra/celery/dagster_celery_config.py (Redis, no prefetch)."""
        env = self._dagster_env()
        env["PYTHONPATH"] = f"{CELERY_CONFIG}{os.pathsep}{env['PYTHONPATH']}"
        for i in range(1, self.workers + 1):
            name = f"{WORKER}{i}"
            if name in running and running[name].alive():
                continue
            step = self.dir / "workers" / str(i)
            step.mkdir(parents=True, exist_ok=True)
            argv = [_bin("celery"), "-A", "dagster_celery.app", "worker", "-Q", "dagster", "--concurrency", "1",
                    "--hostname", f"w{i}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
            proc, log = self._spawn(state, name, f"worker w{i}, workspace {step}", argv,
                                    {**env, "SQUEEZEFLOW_STEP_ROOT": str(step)})
            _wait_log(log, "ready.", 120, proc, name)

    def _dagster_env(self) -> dict:
        self._dagster_home()
        return {**_base_env(), **self.env(), "SQUEEZEFLOW_ROOT": str(self.root)}

    def _start_dagster_webserver(self, state: dict) -> None:
        port, env = self._port(state, "dagster-webserver"), self._dagster_env()
        argv = [_bin("dagster-webserver"), "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)]
        proc, log = self._spawn(state, "dagster-webserver", f"http://127.0.0.1:{port}", argv, env)
        _wait_port(port, 120, proc, log, "dagster-webserver")

    def _start_dagster_daemon(self, state: dict) -> None:
        proc, log = self._spawn(state, "dagster-daemon", "-",
                                [_bin("dagster-daemon"), "run", "-m", "pipelines.definitions"], self._dagster_env())
        time.sleep(1)
        if proc.poll() is not None:
            raise StackError(f"dagster-daemon exited with code {proc.returncode}: see {log}")


def _wait_log(log: Path, marker: str, timeout: float, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode}: see {log}")
        if marker in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise StackError(f"{name} did not report '{marker}' within {timeout:g} s: see {log}")


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise StackError("unavailable: no `redis-server` on PATH (install it: sudo apt-get install redis-server)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _base_env() -> dict:
    """What a service inherits: paths, locale and the project on PYTHONPATH; no credentials of the caller's."""
    keep = ("PATH", "HOME", "LANG", "LC_", "TZ", "TMPDIR", "PYTHONPATH", "DVC_", "GX_", "MLFLOW_DISABLE_TELEMETRY",
            "DAGSTER_DISABLE_TELEMETRY")
    env = {k: v for k, v in os.environ.items() if k.startswith(keep)}
    project = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = project + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise StackError(f"unavailable: no Postgres `{name}` on PATH or in /usr/lib/postgresql/*/bin "
                         "(install it: sudo apt-get install postgresql)")
    return str(found)


def _run_as() -> str | None:
    """None when we are not root; else the unprivileged user Postgres runs as: $SQUEEZEFLOW_STACK_USER, `postgres`
    if it exists, or `nobody`."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("SQUEEZEFLOW_STACK_USER"), "postgres", "nobody"):
        if name:
            try:
                pwd.getpwnam(name)
                return name
            except KeyError:
                continue
    raise StackError("running as root and no unprivileged user to run Postgres as: set SQUEEZEFLOW_STACK_USER")


def _chown(path: Path, user: str | None) -> None:
    if user:
        info = pwd.getpwnam(user)
        os.chown(path, info.pw_uid, info.pw_gid)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each service leads its own session (start_new_session): its children go too
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(svc: Service, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(svc.pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        if not svc.alive():
            return True
        time.sleep(0.2)
    return False
