"""How a long run stops when asked: SIGTERM (a preempted VM, `kill`, a cluster scheduler) or
SIGINT (Ctrl-C) ends the current step instead of the process; the loop then checkpoints and
raises `Preempted`, which the binaries turn into exit code 143 or 130. Rerunning resumes.
"""
from __future__ import annotations

import signal
import threading

from official.autodeeplab.errors import Preempted


def preempted(tool: str, step: int, checkpoint: str | None,
              signum: int = signal.SIGTERM) -> Preempted:
  """The error a loop raises after saving `checkpoint` on SIGTERM or SIGINT."""
  return Preempted(f'[{tool}] {signal.Signals(signum).name} at step {step}: checkpoint '
                   f'{checkpoint} written; rerun the same command to resume',
                   exit_code=128 + signum)


class StopOnSigterm:
  """Within the context, SIGTERM and SIGINT (Ctrl-C) set `requested` (and `signum`) instead of
  ending the process, so the loop can finish its step, checkpoint and stop. (Only in the main
  thread, where Python runs handlers.)"""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signum = signal.SIGTERM
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def _handle(self, signum, frame):
    del frame
    self.requested, self.signum = True, signum

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    return False
