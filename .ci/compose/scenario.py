"""The compose cluster, used as a user would use it; run by test.sh.

Drives ``docker compose`` (COMPOSE, PROJECT) and the host's ``taskmesh`` CLI
(TASKMESH) through the published ports, and checks what a user would check:
workers connect, the seed's tasks succeed on the right workers, every task
completes exactly once through a worker crash and a manager restart, scaled
workers join with distinct names, a worker on the host joins through the
published ports with its own key, and ``stop`` during a long task drains it
(recorded once, by that worker) and ends every container with 0.
Writes its phase timings to TM_REPORT. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from cluster import (
    PORT,
    TASKMESH,
    TMP,
    Failed,
    assert_succeeded_once,
    check,
    compose,
    connected,
    container_of,
    crash,
    fetch_keys,
    inspect,
    run,
    running_on,
    submit,
    taskmesh,
    wait_done,
    wait_for,
    write_tasks,
)

SEED = {"1": ("Junior", 3), "2": ("Intermediate", 6), "3": ("Senior", 9)}
POOL = 5


def phase_up() -> None:
    compose("up", "--detach", "--wait", "--wait-timeout", "150", timeout=240)
    fetch_keys()
    workers = wait_for("3 workers connected", connected(3), 60)
    check(
        sorted((w["name"], w["skill"]) for w in workers) == sorted(SEED.values()),
        f"the seed's workers, got {[(w['name'], w['skill']) for w in workers]}",
    )
    health = {
        s: inspect(container_of(s), "{{.State.Health.Status}}") for s in ("manager", "junior")
    }
    check(set(health.values()) == {"healthy"}, f"health: {health}")
    # The operator's CLI inside the cluster sees what the host sees.
    inside = json.loads(compose("run", "--rm", "-T", "cli", "status", "--json", timeout=120))
    names = sorted(w["name"] for w in inside["workers"] if w["state"] == "connected")
    check(names == sorted(n for n, _ in SEED.values()), f"`run cli status` workers: {names}")
    # CURVE is on by default: a client without the keys gets a clear refusal.
    bare = [TASKMESH, "status", "--port", PORT, "--timeout", "5", "--log-level", "ERROR"]
    proc = subprocess.run(bare, capture_output=True, text=True, timeout=60, check=False)
    check(proc.returncode != 0, "a client without keys was answered: CURVE is off")
    check("CURVE" in proc.stderr, f"no CURVE hint for a client without keys: {proc.stderr!r}")


def phase_demo() -> None:
    out = compose("--profile", "demo", "run", "--rm", "demo", timeout=240)
    check("success rate: 3/3" in out, f"demo output:\n{out}")
    for state in taskmesh("results", *SEED):
        name, _ = SEED[state["id"]]
        check(state["result"]["worker"] == name, f"task {state['id']} ran on the wrong worker")
    # The published metrics port: Prometheus text and the status page's data.
    metrics = http_get("/metrics")
    check('taskmesh_workers{state="connected"} 3.0' in metrics, "metrics: 3 workers connected")
    check('taskmesh_results_total{status="succeeded"}' in metrics, "metrics: no succeeded count")
    page = json.loads(http_get("/status.json"))
    check(len(page["workers"]) >= 3, f"status page: workers {page.get('workers')!r:.200}")
    # README: from a script, `exec -T` into the manager, naming the operator's key.
    operator = ["--secret-key", "/keys/operators/operator.key_secret"]
    piped = json.dumps(echo_tasks("exec", 2))
    out = compose(
        *("exec", "-T", "manager", "taskmesh", "submit", "-", "--wait", "--json", *operator),
        *("--manager-key", "/keys/manager.key", "--log-level", "ERROR"),
        stdin=piped,
        timeout=120,
    )
    results = json.loads(out)["results"]
    check([r["state"] for r in results] == ["done"] * 2, f"exec -T submit: {out[:300]}")


def http_get(path: str) -> str:
    url = f"http://127.0.0.1:{os.environ.get('TASKMESH_PUBLISH_METRICS_PORT', '9100')}{path}"
    with urllib.request.urlopen(url, timeout=10) as answer:  # our own loopback port
        return str(answer.read().decode())


def echo_tasks(prefix: str, count: int, difficulty: int = 2) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{i:03d}", "kind": "echo", "difficulty": difficulty, "payload": {"i": i}}
        for i in range(count)
    ]


def slow_tasks(prefix: str, count: int) -> list[dict[str, Any]]:
    """Difficulty 8: only Senior (skill 9) can run them, 2 s each at time scale 0.25."""
    return [{"id": f"{prefix}-{i}", "difficulty": 8} for i in range(count)]


def phase_crash() -> None:
    path = write_tasks("crash", slow_tasks("crash-slow", 3) + echo_tasks("crash-echo", 200))
    before = int(inspect(container_of("senior"), "{{.RestartCount}}"))
    submit(path)
    wait_for("Senior running a task", running_on("Senior"), 30)
    crash("senior")
    states = wait_done(path)
    assert_succeeded_once(path, states)
    rerun = [s["id"] for s in states if s["attempt"] > 1]
    check(bool(rerun), "no task was re-run after the crash: the kill hit no running task")
    after = int(inspect(container_of("senior"), "{{.RestartCount}}"))
    check(after == before + 1, f"senior restart count {before} -> {after}")
    wait_for("Senior back after its crash", connected(3), 60)


def phase_restart() -> None:
    path = write_tasks("restart", slow_tasks("restart-slow", 3) + echo_tasks("restart-echo", 200))
    epoch = taskmesh("status")["manager"]["epoch"]
    known = len(taskmesh("results"))
    submit(path)
    wait_for("Senior running a task", running_on("Senior"), 30)
    compose("restart", "manager", timeout=60)
    states = wait_done(path)
    assert_succeeded_once(path, states)
    status = taskmesh("status")
    check(status["manager"]["epoch"] != epoch, "the manager was not restarted (same epoch)")
    journal = taskmesh("results")
    check(
        len(journal) == known + len(states), f"journal: {known} + {len(states)} != {len(journal)}"
    )
    check(all(s["state"] == "done" for s in journal), "the journal has unfinished tasks")
    wait_for("3 workers after the manager's restart", connected(3), 60)


def phase_scale() -> None:
    compose("up", "--detach", "--wait", "--wait-timeout", "120", "--scale", f"worker={POOL}")
    workers = wait_for(f"{3 + POOL} workers connected", connected(3 + POOL), 60)
    pool = sorted(w["name"] for w in workers if w["name"] not in {n for n, _ in SEED.values()})
    containers = sorted(c[:12] for c in compose("ps", "-q", "worker").split())
    check(len(set(pool)) == POOL, f"pool workers' names are not distinct: {pool}")
    check(pool == containers, f"pool names {pool} are not their containers' ids {containers}")
    path = write_tasks("pool", echo_tasks("pool-echo", 20, difficulty=5))
    submit(path)
    states = wait_done(path)
    assert_succeeded_once(path, states)
    check(
        any(s["result"]["worker"] in pool for s in states),
        "no task ran on a pool worker (best-fit prefers skill 5 for difficulty 5)",
    )


#: A task in flight when docker stops its worker: longer than docker's default 10 s
#: before SIGKILL, shorter than the worker's drain (TASKMESH_GRACE, 30 s) and
#: compose's stop_grace_period (45 s).
LONG = 18


def long_task(task_id: str, difficulty: int) -> dict[str, Any]:
    return {"id": task_id, "kind": "sleep", "payload": LONG, "difficulty": difficulty}


def trouble(name: str) -> int:
    """How many manager log lines say worker ``name`` was unreachable or lost."""
    lines = compose("logs", "--no-color", "manager", timeout=60).splitlines()
    return sum(name in ln and ("unreachable" in ln or "lost:" in ln) for ln in lines)


def drained_once(task_id: str, worker: str) -> None:
    """``task_id`` done once, by ``worker`` at its first attempt: it was neither
    cut off nor re-run."""
    (state,) = taskmesh("results", task_id)
    result = state["result"] or {}
    got = (state["state"], result.get("success"), result.get("worker"), state["attempt"])
    check(got == ("done", True, worker, 1), f"{task_id}: (state, success, worker, attempt) {got}")


def stopped_cleanly(container: str) -> None:
    got = inspect(container, "{{.Name}} {{.State.Status}} {{.State.ExitCode}}")
    check(got.endswith(" exited 0"), f"not exit 0 (137: docker killed it mid-drain): {got}")


def phase_stop() -> None:
    containers = compose("ps", "-q").split()
    check(len(containers) == 4 + POOL, f"expected {4 + POOL} containers, got {len(containers)}")
    # One worker stopped during a long task: it finishes it within its drain and
    # exits 0; the manager never sees it unreachable and nothing re-runs.
    senior = container_of("senior")
    before = trouble("Senior")
    submit(write_tasks("stop-senior", [long_task("stop-senior", 8)]))  # only Senior can
    wait_for("Senior running the long task", running_on("Senior"), 30)
    compose("stop", "senior", timeout=120)
    stopped_cleanly(senior)
    drained_once("stop-senior", "Senior")
    check(trouble("Senior") == before, "the manager logged Senior unreachable or lost")
    # The whole cluster stopped during a long task (Intermediate's: best fit for 6).
    manager = container_of("manager")
    before = trouble("Intermediate")
    submit(write_tasks("stop-all", [long_task("stop-all", 6)]))
    wait_for("Intermediate running the long task", running_on("Intermediate"), 30)
    compose("stop", timeout=180)
    for container in containers:
        stopped_cleanly(container)
    # The manager stopped last, after recording the drained result: start it alone to look.
    run(["docker", "start", manager])
    wait_for("the manager back", lambda: taskmesh("results", "stop-all"), 60)
    drained_once("stop-all", "Intermediate")
    check(trouble("Intermediate") == before, "the manager logged Intermediate unreachable or lost")
    run(["docker", "stop", "--time", "20", manager], timeout=60)
    stopped_cleanly(manager)


def phase_outside() -> None:
    """A worker on the host joins through the published ports, as the README tells
    an operator: its own key pair, the public half listed in /keys/workers."""
    run([TASKMESH, "keys", "generate", "outside", "--dir", str(TMP)])
    public = (TMP / "outside.key").read_text()
    listed = ["run", "--rm", "-T", "--no-deps", "--entrypoint", "sh", "keys", "-c"]
    compose(*listed, "cat > /keys/workers/outside.key", stdin=public, timeout=60)
    cmd = [TASKMESH, "worker", "--host", "127.0.0.1", "--port", PORT, "--name", "Outside"]
    cmd += ["--skill", "7", "--secret-key", str(TMP / "outside.key_secret")]
    cmd += ["--manager-key", str(TMP / "manager.key"), "--log-level", "INFO"]
    log = (TMP / "outside.log").open("w")
    worker = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def joined() -> bool:
            workers = taskmesh("status")["workers"]
            return any(w["name"] == "Outside" and w["state"] == "connected" for w in workers)

        wait_for("the outside worker connected", joined, 60)
        path = write_tasks("outside", echo_tasks("outside-echo", 3, difficulty=7))
        submit(path)  # best fit for 7: Outside (skill 7, one slot), then Senior (9)
        states = wait_done(path, timeout=60)
        assert_succeeded_once(path, states)
        workers = {s["result"]["worker"] for s in states}
        check("Outside" in workers, f"no task ran on the outside worker: {workers}")
        worker.send_signal(15)
        try:
            code = worker.wait(timeout=45)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"the outside worker on SIGTERM: exit {code}")

        def gone() -> bool:
            return all(w["name"] != "Outside" for w in taskmesh("status")["workers"])

        wait_for("the outside worker gone from status", gone, 30)
    except Failed as exc:
        tail = (TMP / "outside.log").read_text()[-3000:]
        raise Failed(f"{exc}\nthe outside worker's log:\n{tail}") from None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        log.close()


def phase_image() -> None:
    """The image as a user meets it: non-root, no build leftovers, /data writable."""
    cfg = json.loads(run(["docker", "image", "inspect", "taskmesh:local"]))[0]["Config"]
    check(cfg["User"] == "taskmesh", f"user {cfg['User']!r}")
    check(cfg["Entrypoint"] == ["taskmesh"], f"entrypoint {cfg['Entrypoint']}")
    ports = {"8888/tcp", "8889/tcp", "9100/tcp"}
    check(set(cfg["ExposedPorts"]) == ports, f"ports {cfg['ExposedPorts']}")
    check(bool(cfg.get("Healthcheck")), "no healthcheck")
    find = "find /opt /data /app /src /tmp -name '*.egg-info' -o -name build -o -name '*.whl'"
    image_sh = ["docker", "run", "--rm", "--entrypoint", "sh", "taskmesh:local", "-c"]
    leftovers = run([*image_sh, f"{find} 2>/dev/null; true"])
    check(not leftovers.strip(), f"build leftovers in the image: {leftovers.split()[:5]}")
    # The two documented ways to give the manager a bind-mounted /data.
    for owner, user in (("10001", None), ("4242", "4242:4242")):
        data = TMP / f"data-{owner}"
        data.mkdir()
        os.chown(data, int(owner), int(owner))
        args = ["docker", "run", "--detach", "-v", f"{data}:/data"]
        container = run([*args, *(["--user", user] if user else []), "taskmesh:local"]).strip()
        try:
            wait_for(f"journal in a /data owned by {owner}", (data / "taskmesh.db").exists, 30)
        finally:
            run(["docker", "rm", "--force", container])


def main() -> None:
    timings: list[str] = []
    phases = [
        ("image", phase_image),
        ("up", phase_up),
        ("demo", phase_demo),
        ("crash", phase_crash),
        ("restart", phase_restart),
        ("scale", phase_scale),
        ("outside", phase_outside),
        ("stop", phase_stop),
    ]
    try:
        for name, fn in phases:
            start = time.monotonic()
            sys.stderr.write(f"== {name}\n")
            try:
                fn()
            except (Failed, subprocess.TimeoutExpired) as exc:
                sys.exit(f"compose test: phase {name} failed: {exc}")
            timings.append(f"{name}={time.monotonic() - start:.1f}s")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    Path(os.environ["TM_REPORT"]).write_text(" ".join(timings) + "\n")


if __name__ == "__main__":
    main()
