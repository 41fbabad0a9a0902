"""Size limits end to end: nothing too big is sent, and the user is told why."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from protocol import MAX_ITEM_BYTES, ProtocolError, TaskResult, TaskSpec
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, submit, wait_done, wait_until


def test_output_over_the_limit_becomes_an_error_result(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "4")
    wait_until(connected(cluster, 1), what="worker")
    small, large = MAX_ITEM_BYTES // 2, MAX_ITEM_BYTES * 2
    ids = submit(
        cluster,
        [
            TaskSpec(id="small", kind="big", payload=small),
            TaskSpec(id="large", kind="big", payload=large),
        ],
    )
    states = {s.id: s for s in wait_done(cluster, ids)}
    assert states["small"].result is not None
    assert states["small"].result.output == b"x" * small
    bad = states["large"].result
    assert bad is not None
    assert bad.status == "error"
    assert bad.error is not None
    assert "over the" in bad.error.message


def test_many_large_outputs_travel_in_several_messages(cluster: Cluster) -> None:
    cluster.manager()
    cluster.worker("w", 5, *HANDLERS, "--capacity", "8")
    wait_until(connected(cluster, 1), what="worker")
    size = MAX_ITEM_BYTES - 1000  # eight of these are twice the message limit
    ids = submit(cluster, [TaskSpec(id=f"b{i}", kind="big", payload=size) for i in range(8)])
    states = wait_done(cluster, ids)
    assert all(s.result is not None and s.result.success for s in states)
    assert all(len(s.result.output) == size for s in states if s.result)


def test_oversized_task_is_refused_with_a_clear_error(cluster: Cluster) -> None:
    cluster.manager()
    task = [{"id": "huge", "payload": "x" * (MAX_ITEM_BYTES + 10)}]
    proc = subprocess.run(
        [sys.executable, "-m", "taskmesh", "submit", "-", "--port", str(cluster.port)],
        input=json.dumps(task),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "limit" in proc.stderr  # refused by the client, before it reaches the manager
    assert "huge" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_listing_pages_through_every_task(cluster: Cluster) -> None:
    cluster.manager()
    ids = submit(cluster, [TaskSpec(id=f"t{i:05d}", payload="p" * 500) for i in range(2500)])

    async def listing() -> list[str]:
        async with cluster.client() as c:
            return [s.id for s in await c.tasks()]

    assert cluster.run(listing()) == ids
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskmesh",
            "results",
            "t00007",
            "nope",
            "--json",
            "--port",
            str(cluster.port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    states = json.loads(out.stdout)
    assert [(s["id"], s["state"]) for s in states] == [("t00007", "queued"), ("nope", "unknown")]


@pytest.mark.parametrize(
    ("status", "success"),
    [("succeeded", False), ("failed", True), ("exploded", False)],
)
def test_result_status_and_success_must_agree(status: str, success: bool) -> None:
    with pytest.raises(ValueError, match=r"status|success"):
        TaskResult(
            task_id="t", attempt=1, worker="w", worker_id="w", success=success, status=status
        )


def test_decode_refuses_inconsistent_results() -> None:
    import msgpack

    import protocol

    body = {
        "type": "results",
        "results": [
            {
                "task_id": "t",
                "attempt": 1,
                "worker": "w",
                "worker_id": "w",
                "success": True,
                "status": "failed",
            }
        ],
    }
    with pytest.raises(ProtocolError):
        protocol.decode(msgpack.packb(body))


def test_client_splits_a_large_submission_by_size(cluster: Cluster) -> None:
    cluster.manager()
    payload = "p" * (MAX_ITEM_BYTES // 2)  # ten of these are over twice the message limit
    ids = submit(cluster, [TaskSpec(id=f"L{i}", payload=payload) for i in range(10)])
    assert ids == [f"L{i}" for i in range(10)]


def test_encoding_an_oversized_message_is_a_clear_error() -> None:
    import protocol

    big = protocol.Broadcast(sender="a", seq=1, time=1, data=b"x" * protocol.MAX_MESSAGE_BYTES)
    with pytest.raises(ProtocolError, match="over the") as info:
        protocol.encode(big)
    assert info.value.code == "too_large"
