"""What every binary shares: quiet TensorFlow logs, gin flags, and bad input as one line + exit 2."""
from __future__ import annotations

import os
import sys
from typing import Callable

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from official.autodeeplab.errors import UserInputError  # noqa: E402

EXIT_BAD_INPUT = 2


def define_gin_flags() -> None:
  flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), applied in order.')
  flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, e.g. "search.num_layers = 4".')


def parse_gin(gin_files, gin_bindings) -> None:
  """Parses gin files and bindings; a missing file or bad binding is a one-line error."""
  import gin
  for path in gin_files:
    if not os.path.isfile(path):
      raise UserInputError(f'--gin_file={path}: no such file')
  try:
    gin.parse_config_files_and_bindings(gin_files, gin_bindings)
  except Exception as e:  # gin raises many types (ValueError, KeyError, SyntaxError...)
    raise UserInputError(f'--gin_file/--gin_bindings: {type(e).__name__}: {e}'.splitlines()[0])


def run(main: Callable[[list[str]], None]) -> None:
  """absl.app.run, turning UserInputError into `error: ...` on stderr and exit code 2."""

  def wrapped(argv):
    try:
      main(argv)
    except UserInputError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(EXIT_BAD_INPUT)

  app.run(wrapped)
