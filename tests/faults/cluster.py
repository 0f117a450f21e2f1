"""django-q2 worker clusters (`manage.py qcluster`) as subprocesses of a test, beside the daphne
processes of tests/live/stack.py, and what their logs say they ran. Used by the multi-process
test (tests/faults/test_multiprocess.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.live.stack import ROOT

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30

# django-q2's worker logs "<process> processing <task name> '<function>' [<group>]" as it starts a
# task; the task name is unique per task and is the Task row's `name`.
PROCESSING = re.compile(r" processing (\S+) '([^']+)'")
RUNNING = re.compile(r"Q Cluster (\S+) \[[^\]]*\] running\.")


@dataclass
class Cluster:
    label: str
    log_path: Path
    process: subprocess.Popen
    cluster_id: str = ""  # django-q2's humanized id, from its "running." line

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def processed(self) -> dict[str, str]:
        """Task name → function of every task this cluster's workers started."""
        return {name: func for name, func in PROCESSING.findall(self.log())}

    def counts(self) -> dict[str, int]:
        """Tasks started per function (the last dotted part: tick, advance, ...)."""
        return dict(Counter(func.rsplit(".", 1)[-1] for func in self.processed().values()))


@contextmanager
def worker_cluster(env: dict, log_path: Path, label: str) -> Iterator[Cluster]:
    """`manage.py qcluster` with `env` (the server's: same database and broker) until the block
    ends, then SIGTERM and wait for its graceful stop. Asserts on exit that it logged no
    traceback."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: if the graceful stop hangs, the worker processes it forked go
        # down with it instead of outliving the test.
        start_new_session=True,
    )
    cluster = Cluster(label=label, log_path=log_path, process=process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not (found := RUNNING.search(cluster.log())):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            log.close()
            raise RuntimeError(f"{label} did not start:\n{cluster.log()}")
        time.sleep(0.2)
    cluster.cluster_id = found.group(1)
    try:
        yield cluster
    finally:
        _stop(process)
        log.close()
    text = cluster.log()
    assert "Traceback" not in text, text[text.index("Traceback") - 2000 :][:6000]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # django-q2 finishes the running tasks, then exits
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)
        raise AssertionError(
            f"qcluster {process.pid} ignored SIGTERM for {STOP_TIMEOUT_S} s"
        ) from None
