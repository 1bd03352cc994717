"""Child-process helpers for the dev supervisor."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in the child before exec: the kernel sends it SIGTERM if the supervisor dies.

    So `kill -9` of `s3compat dev` (or of a test run) never leaves nodes or PostgreSQL
    running behind it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: best effort only
        pass
