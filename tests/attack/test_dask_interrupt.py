"""Ctrl-C while the Dask client waits: distributed's own leftovers on the event loop print no traceback, and any
other error raised in a loop callback still does."""

import io
import logging
import signal
import time

from distributed.utils import LoopRunner, sync

import jobs.dask_cluster  # noqa: F401  (installs the filter on tornado's logger)


def _ctrl_c_while_sync_waits(busy_s: float, ctrl_c_after_s: float, then=None) -> str:
    """Run distributed's ``sync()`` on a loop kept busy, with a real SIGINT-style KeyboardInterrupt (from SIGALRM) in
    the main thread while it waits; return what tornado's logger printed."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("tornado.application")
    log.addHandler(handler)
    runner = LoopRunner(asynchronous=False)
    runner.start()

    def ctrl_c(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, ctrl_c)
    try:

        async def call():
            return 1

        runner.loop.add_callback(time.sleep, busy_s)  # the loop has not started the call when Ctrl-C comes
        signal.setitimer(signal.ITIMER_REAL, ctrl_c_after_s)
        interrupted = False
        try:
            sync(runner.loop, call)
        except KeyboardInterrupt:
            interrupted = True
        assert interrupted
        if then is not None:
            runner.loop.add_callback(then)
        time.sleep(busy_s + 0.5)  # the loop runs the leftover callbacks
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        runner.stop()
        log.removeHandler(handler)
    return out.getvalue()


def test_ctrl_c_before_sync_started_its_call_prints_no_traceback_but_other_callback_errors_do():
    def broken():
        raise NameError("a real bug in a loop callback")

    printed = _ctrl_c_while_sync_waits(0.5, 0.1, then=broken)
    # distributed's cancel() leftover (NameError on its unbound `future`) is dropped ...
    assert "sync.<locals>.cancel" not in printed and "free variable 'future'" not in printed
    # ... while an unrelated NameError in a callback is still printed with its traceback
    assert "a real bug in a loop callback" in printed and "Traceback" in printed
