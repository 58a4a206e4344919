"""The one exception type for bad user input.

Raised where files, flags and genotypes enter the library; the binaries in `tools/` turn it into a
one-line `error: ...` message and exit code 2 instead of a traceback.
"""


class UserInputError(ValueError):
  """Input that a user can fix: the message names the file or flag and what was expected."""


class Preempted(Exception):
  """A run asked to stop (SIGTERM) that has checkpointed; the message says where. The binaries
  exit with code 143 (128 + SIGTERM), and rerunning them resumes."""


class DivergedError(UserInputError):
  """A run whose loss or logits stopped being finite; the message names the step, the checkpoint
  kept and the setting to change."""
