"""The one exception type for bad user input.

Raised where files, flags and genotypes enter the library; the binaries in `tools/` turn it into a
one-line `error: ...` message and exit code 2 instead of a traceback.
"""


def reason(error: BaseException, limit: int = 200) -> str:
  """The first line of what an OS, TensorFlow or Python error says, for a one-line message."""
  text = (getattr(error, 'message', None) or getattr(error, 'strerror', None) or str(error)
          or type(error).__name__)
  return text.strip().splitlines()[0][:limit]


class UserInputError(ValueError):
  """Input that a user can fix: the message names the file or flag and what was expected."""


class Preempted(Exception):
  """A run asked to stop (SIGTERM, or SIGINT: Ctrl-C) that has checkpointed; the message says
  where. The binaries exit with `exit_code` (128 + the signal: 143 or 130), as a shell reports a
  process ended by that signal, and rerunning them resumes."""

  def __init__(self, message: str, exit_code: int = 143):
    super().__init__(message)
    self.exit_code = exit_code


class DivergedError(UserInputError):
  """A run whose loss or logits stopped being finite; the message names the step, the checkpoint
  kept and the setting to change."""


class PeerLost(Exception):
  """A multi-worker run that lost a peer (dead, stalled or disconnected); the message names it,
  the step and the last checkpoint. The binaries print it and end the process at once with
  `exit_code` (75, EX_TEMPFAIL): restarting every worker resumes (`training/workers.py`)."""

  def __init__(self, message: str, exit_code: int = 75):
    super().__init__(message)
    self.exit_code = exit_code
