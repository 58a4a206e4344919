"""Files written whole or not at all, and a full disk or unwritable directory as one line."""
from __future__ import annotations

import os

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.errors import reason


def write_bytes(path: str, data: bytes) -> str:
  """Writes `path` atomically (a temporary file renamed into place), so a reader never sees a
  half-written file and a failed write leaves the previous one intact; an OS error (no space
  left, read-only or missing directory) is a UserInputError naming the path and the error.
  Returns `path`."""
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except OSError as e:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise UserInputError(f'{path}: cannot write it ({reason(e)}); the previous version, if any, '
                         'is intact') from None
  return path


def write_text(path: str, text: str) -> str:
  """`write_bytes` of UTF-8 text."""
  return write_bytes(path, text.encode())


def write_json(path: str, data) -> str:
  """`write_text` of `data` as indented JSON."""
  import json
  return write_text(path, json.dumps(data, indent=1) + '\n')
