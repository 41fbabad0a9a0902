"""The status page as a browser shows it: headless Chromium renders it, its script fetches
the JSON and fills the page (``make test-browser``; not part of ``make test``).

``make test-browser`` fails, saying why, where Chromium is not installed (Debian:
``apt-get install chromium``); ``pytest -m browser`` alone skips, saying why.  The
screenshot is kept in the test's temporary directory and its path printed, for a person
to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import TaskSpec
from tests.conftest import Cluster
from tests.helpers.ops import HANDLERS, connected, submit, wait_done, wait_until
from tests.test_observe import metrics_url

pytestmark = pytest.mark.browser

#: ``make test-browser`` names the browser it found in ``$CHROMIUM`` (and fails before
#: pytest where there is none); run directly, the test looks for one and skips without.
CHROMIUM = os.environ.get("CHROMIUM") or next(
    (
        p
        for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser"))
        if p and Path(p).exists()
    ),
    None,
)


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--window-size=1200,900", "--virtual-time-budget=5000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_status_page_renders_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    cluster.manager("--metrics-port", "0")
    cluster.worker("alice", 5, *HANDLERS, "--capacity", "2")
    wait_until(connected(cluster, 1), what="alice")
    submit(cluster, [TaskSpec(id=f"ok-{i}", kind="noop") for i in range(5)])
    submit(cluster, [TaskSpec(id="bad", kind="fail"), TaskSpec(id="hard", difficulty=9)])
    wait_done(cluster, [*(f"ok-{i}" for i in range(5)), "bad"])
    url = metrics_url(cluster) + "/"

    dom = chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout

    def filled(element: str) -> str:
        found = re.search(rf'id="{element}"[^>]*>([^<]*)<', html)
        assert found, f"#{element} not in the rendered page"
        return found.group(1)

    # The script ran, fetched status.json and wrote what the manager counts.
    assert filled("succeeded") == "5"
    assert filled("failed") == "1"
    assert filled("queued") == "1"
    assert filled("success") == "83.3%"
    assert filled("workers-title") == "Workers (1 connected)"
    assert 'data-worker="alice-' in html
    assert "1 waiting: no worker with skill &gt;= 9 (best: 5)" in html
    assert "<polyline" in html  # the throughput chart was drawn
    assert 'id="error" style="display: none;"' in html

    shot = tmp_path / "status-page.png"
    taken = chromium(f"--screenshot={shot}", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a page, not a blank
    sys.stdout.write(f"\nscreenshot: {shot}\n")
