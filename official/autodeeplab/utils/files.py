"""Files written whole or not at all, and a full disk or unwritable directory as one line."""
from __future__ import annotations

import os

from official.autodeeplab.errors import UserInputError


def write_text(path: str, text: str) -> None:
  """Writes `path` atomically (a temporary file renamed into place), so a reader never sees a
  half-written file and a failed write leaves the previous one intact; an OS error (no space
  left, read-only or missing directory) is a UserInputError naming the path and the error."""
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(tmp, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise UserInputError(f'{path}: cannot write it ({e.strerror or e}); the previous version, '
                         'if any, is intact') from None
