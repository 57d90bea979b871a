"""The bundled Redis: one per install on a unix socket in DATA_DIR, started on demand, reused, safe
under a race, restarted by its keeper when it dies, clear when it cannot start, and never outliving
the command that started it."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis

from jobs import redis_server
from jobs.redis_server import (
    RedisStartError,
    bundled_url,
    ensure_redis,
    keep_running,
    shutdown,
    socket_path,
    start_foreground,
)

from .conftest import DEMO_TAX_ID, SAMPLES
from .servers import alive, processes_of, wait_for

ROOT = Path(__file__).resolve().parents[1]


def client_of(folder: Path) -> redis.Redis:
    """A client on an install's socket."""
    return redis.Redis(unix_socket_path=str(socket_path(folder)), socket_timeout=2, decode_responses=True)


def pid_of(folder: Path) -> int | None:
    """The pid of the install's server, None while none answers."""
    try:
        return client_of(folder).info("server")["process_id"]
    except (redis.RedisError, OSError):
        return None


@pytest.fixture
def installs(monkeypatch):
    """Short DATA_DIRs (a unix socket path has a length limit), no REDIS_URL; servers stopped after."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    folders = [Path(tempfile.mkdtemp(prefix="rs-")) for _ in range(3)]
    yield folders
    for folder in folders:
        if pid := pid_of(folder):
            os.kill(pid, signal.SIGKILL)


def test_a_set_redis_url_is_used_and_no_bundled_server_started(monkeypatch, installs):
    assert bundled_url(installs[0]) == f"unix://{installs[0].resolve()}/redis/redis.sock?db=0"
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/2")
    assert ensure_redis(installs[0]) == "redis://elsewhere:1/2"
    assert not (installs[0] / "redis").exists()


def test_starts_a_server_on_a_socket_only_then_reuses_it(installs):
    folder = installs[0]
    assert ensure_redis(folder) == bundled_url(folder)
    client = client_of(folder)
    pid = client.info("server")["process_id"]
    assert int((folder / "redis" / "redis.pid").read_text()) == pid
    assert os.getpid() == _parent_pid(pid), "the server belongs to the process that started it"
    assert client.config_get("port") == {"port": "0"}, "nothing may listen on TCP"
    assert not _tcp_listeners(pid)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("dir")["dir"] == str((folder / "redis").resolve())
    assert ensure_redis(folder) == bundled_url(folder)
    assert client.info("server")["process_id"] == pid


def test_two_installs_have_two_queues(installs):
    """Two DATA_DIRs on one machine: each app's jobs land in its own Redis, never the other's."""
    from jobs.queue import get_queue
    from wsgi import create_app

    apps = [create_app({"DATA_DIR": str(folder), "REDIS_URL": None,
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'db.sqlite'}"}) for folder in installs[:2]]
    queues = []
    for folder, app in zip(installs, apps, strict=False):
        with app.app_context():
            queue = get_queue()  # rq 2.12 takes job ids of letters, digits, "_" and "-" only: the folder's name
            queue.enqueue("jobs.tasks.parse_upload", 1, job_id=f"job-of-{folder.name}")
            queues.append((queue.connection.connection_pool.connection_kwargs["path"], queue.job_ids))
    (path_a, jobs_a), (path_b, jobs_b) = queues
    assert path_a != path_b
    assert jobs_a == [f"job-of-{installs[0].name}"] and jobs_b == [f"job-of-{installs[1].name}"]
    assert pid_of(installs[0]) != pid_of(installs[1])


def test_racing_starts_give_one_server_per_install(installs):
    """Four processes share a data dir and two use another: each install gets exactly one server."""
    code = ("import sys; from pathlib import Path; from jobs.redis_server import ensure_redis; "
            "print(ensure_redis(Path(sys.argv[1])), flush=True); sys.stdin.read()")  # holds it until told
    dirs = [installs[0]] * 4 + [installs[1]] * 2
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for d in dirs]
    outputs = [p.stdout.readline().strip() for p in procs]
    assert set(outputs) == {bundled_url(installs[0]), bundled_url(installs[1])}
    for folder in installs[:2]:
        assert int((folder / "redis" / "redis.pid").read_text()) == pid_of(folder)
    servers = [pid for pid, _ in processes_of(installs[0]) if Path(f"/proc/{pid}/comm").read_text() == "redis-server\n"]
    assert len(servers) == 1
    for p in procs:
        p.communicate(timeout=30)
    assert [p.returncode for p in procs] == [0] * len(procs)


def test_keeper_restarts_a_killed_server_and_stops_it_at_the_end(installs):
    """Under `make run` supervisord's redis program keeps the server up: kill it, it comes back."""
    folder, stop, said = installs[0], threading.Event(), []
    keeper = threading.Thread(target=keep_running, args=(folder, stop, said.append))
    keeper.start()
    try:
        wait_for(lambda: any("已启动" in line for line in said))  # up and answering, not still starting
        first = pid_of(folder)
        client_of(folder).set("kept", "yes")
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: pid_of(folder) not in (None, first) and pid_of(folder))
        assert second != first
        assert any("重启" in line for line in said)
        assert wait_for(lambda: client_of(folder).get("kept")) == "yes", "the append-only file kept the data"
    finally:
        stop.set()
        keeper.join(15)
    assert not keeper.is_alive()
    assert pid_of(folder) is None


def test_keeper_watches_a_server_a_command_started(installs):
    """A server already started (by a CLI command) is watched, not doubled, and stopped."""
    folder, stop = installs[0], threading.Event()
    ensure_redis(folder)
    daemon = pid_of(folder)
    keeper = threading.Thread(target=keep_running, args=(folder, stop, lambda _: None))
    keeper.start()
    time.sleep(1.5)
    assert pid_of(folder) == daemon
    stop.set()
    keeper.join(15)
    assert pid_of(folder) is None


def test_too_long_a_data_dir_is_refused_clearly(installs):
    deep = installs[0] / ("x" * 120)
    with pytest.raises(RedisStartError) as error:
        ensure_redis(deep)
    assert "DATA_DIR" in str(error.value) and "路径过长" in str(error.value)


def test_failed_start_reports_the_log(installs, monkeypatch):
    """A server that cannot start (here: an option it rejects) fails with its own words."""
    folder = installs[0]
    real_argv = redis_server._server_argv
    monkeypatch.setattr(redis_server, "_server_argv",
                        lambda *a, **k: real_argv(*a, **k) + ["--maxmemory-policy", "no-such-policy"])
    with pytest.raises(RedisStartError) as error:
        start_foreground(folder, timeout=5)
    assert "无法启动内置 Redis" in str(error.value)
    with pytest.raises(RedisStartError) as error:
        ensure_redis(folder, timeout=5)
    assert "no-such-policy" in str(error.value) or "argument" in str(error.value).lower()


def test_shutdown_of_a_server_that_is_not_running_is_quiet(installs):
    shutdown(installs[0])


def _parent_pid(pid: int) -> int:
    """Read a process's parent id from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _tcp_listeners(pid: int) -> list[str]:
    """The TCP sockets a process listens on, read from /proc (no tool needed)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.append(fields[1])
    return listening


def test_redis_program_with_an_external_redis_only_waits(tmp_path):
    """With REDIS_URL set, the redis program run by hand starts nothing and stops on SIGTERM."""
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.redis_server"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            text=True)
    assert "REDIS_URL" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not (tmp_path / "redis").exists()


def test_a_command_that_started_the_bundled_redis_leaves_nothing_running(tmp_path):
    """(README, Run it) `flask import-file --wait` with no `make run` starts the bundled Redis for itself;
    when it exits that Redis is gone too, so nothing of the install is left running."""
    folder = Path(tempfile.mkdtemp(prefix="rc-"))
    env = {**os.environ, "DATA_DIR": str(folder)}
    for name in ("REDIS_URL", "DATABASE_URL", "SUPERVISOR_ENABLED"):
        env.pop(name, None)
    flask = [str(Path(sys.executable).with_name("flask")), "--app", "wsgi"]
    for args in (["db", "upgrade"], ["seed-demo"]):
        subprocess.run([*flask, *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    sample = SAMPLES / "etax-export-2024.xlsx"
    done = subprocess.run([*flask, "import-file", "--tax-id", DEMO_TAX_ID, "--file", str(sample), "--as", "caiwu",
                           "--wait"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (folder / "redis" / "appendonly.aof").exists(), "it did use the bundled Redis"
    wait_for(lambda: not processes_of(folder), 10, "nothing of the install left running")
    assert pid_of(folder) is None


@pytest.mark.parametrize("ending", ["exits", "is killed"])
def test_a_bundled_redis_whose_data_dir_is_gone_still_stops_with_its_owner(installs, ending):
    """A Redis that cannot save (its DATA_DIR deleted under it) once refused to stop; now it stops when
    the process that started it exits or is SIGKILLed (jobs.lifeline then sends it SIGTERM)."""
    folder = installs[0]
    code = ("import sys; from pathlib import Path; from jobs.redis_server import ensure_redis; "
            "print(ensure_redis(Path(sys.argv[1])), flush=True); sys.stdin.read()")
    owner = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == bundled_url(folder)
    server = pid_of(folder)
    client_of(folder).set("queued", "1")
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    if ending == "exits":
        owner.communicate(timeout=30)
    else:
        owner.kill()
        owner.wait(10)
    wait_for(lambda: not alive(server), 15, "the bundled Redis stopped")
