"""wartiket.pid: the process id without a system call, right in a forked child (what every per-pid cache of
Redis clients, connections and listener threads relies on)."""

from __future__ import annotations

import multiprocessing
import os

from wartiket import pid


def _report(queue) -> None:
    queue.put((pid.current(), os.getpid()))


def test_the_pid_is_the_processs_own_in_the_parent_and_in_a_forked_child():
    assert pid.current() == os.getpid()
    context = multiprocessing.get_context("fork")  # how the web server starts its workers
    queue = context.Queue()
    child = context.Process(target=_report, args=(queue,))
    child.start()
    seen, real = queue.get(timeout=30)
    child.join(30)
    assert seen == real == child.pid != os.getpid()
