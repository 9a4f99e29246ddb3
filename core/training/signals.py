"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM, at any moment.

A `StopFlag`'s handlers only record the request; the run acts on it where that is safe: between
the phases of its start-up (after loading data, after building the state, after compiling) and
after each step or epoch, where it writes a checkpoint first. Nothing is interrupted inside JAX,
XLA's compiler or a garbage-collection callback, so a stop can neither crash the process nor be
swallowed. A second Ctrl-C stops at once (KeyboardInterrupt). The command that trains installs
its flag before it imports JAX; the run finds and shares it (`StopFlag.active`). This module
imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from ..errors import TrainingInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """SIGINT/SIGTERM ask the run to stop at its next safe point; a second SIGINT stops at once."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not self.requested:
            self.signal_name = signal.Signals(signum).name
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            os.write(2, f"\n{self.signal_name}: stopping at the next safe point{again}\n".encode())
        self.requested = True

    def check(self, where: str) -> None:
        """Raise TrainingInterrupted if a stop was asked for; `where` says what was under way."""
        if self.requested:
            raise TrainingInterrupted(f"stopped by {self.signal_name or 'a signal'} {where}")

    @staticmethod
    def active() -> StopFlag | None:
        """The flag whose handler is installed for SIGINT now, if any."""
        handler = signal.getsignal(signal.SIGINT)
        owner = getattr(handler, "__self__", None)
        return owner if isinstance(owner, StopFlag) else None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Install this flag's handlers for the block (and restore the previous ones after). Inside
        a block of another flag, that one stays in charge and is what the block gets."""
        outer = StopFlag.active()
        if outer is not None and outer is not self:
            yield outer
            return
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
