"""Many command lines of one binary in one fresh process: its bad-input cases, each answered as a
user sees it (exit code, stdout, stderr), for the price of one Python + TensorFlow start-up.

  results = run_batch('search', [['--workdir=x', '--crop_size=0'], [...]])

In the child (`python -m tests.cli_batch tools.search`), each command line runs through the
binary's own `common.run(main)` (absl's flag parsing, the one-line errors, the exit codes) with
the flags, gin, the Keras policy and the workdir locks reset between them, so a case sees
nothing of the one before. A case whose point is the process itself (a signal, the native
stderr filter, a second process holding a lock) keeps its own subprocess (`conftest.run_tool`).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys

MARKER = '\x00cli_batch results\x00'


def run_batch(tool: str, commands: list[list[str]], cwd: str | None = None,
              timeout: float = 900) -> list[subprocess.CompletedProcess]:
  """Runs `python -m tools.<tool> args` for each args of `commands` in one child process."""
  from tests.conftest import ROOT
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  child = subprocess.run([sys.executable, '-m', 'tests.cli_batch', f'tools.{tool}'],
                         input=json.dumps(commands), cwd=cwd or ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
  if MARKER not in child.stdout:
    raise AssertionError(f'cli_batch for tools.{tool} died: {child.stderr[-3000:]}')
  results = json.loads(child.stdout.split(MARKER, 1)[1])
  return [subprocess.CompletedProcess([tool, *args], r['returncode'], r['stdout'], r['stderr'])
          for args, r in zip(commands, results)]


def _reset() -> None:
  """What one command line leaves behind in the process, undone."""
  from absl import flags
  flags.FLAGS.unparse_flags()
  if 'gin' in sys.modules:
    sys.modules['gin'].clear_config()
  if 'keras' in sys.modules:
    sys.modules['keras'].mixed_precision.set_global_policy('float32')
  from official.autodeeplab.utils import workdir_lock
  for descriptor in workdir_lock._HELD.values():  # pylint: disable=protected-access
    os.close(descriptor)
  workdir_lock._HELD.clear()  # pylint: disable=protected-access


def _main() -> None:
  os.environ['AUTODEEPLAB_RAW_STDERR'] = '1'  # the filter re-plumbs fd 2: not per case
  module = importlib.import_module(sys.argv[1])
  from tools import common
  commands = json.loads(sys.stdin.read())
  program = module.__file__
  results = []
  for args in commands:
    stdout, stderr = io.StringIO(), io.StringIO()
    sys.argv = [program, *args]
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      try:
        common.run(module.main)
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except Exception:  # noqa: BLE001 (a traceback is what the test must see)
        import traceback
        traceback.print_exc()
        code = 1
    results.append({'returncode': code, 'stdout': stdout.getvalue(),
                    'stderr': stderr.getvalue()})
    _reset()
  sys.stdout.write(MARKER + json.dumps(results))
  sys.stdout.flush()


if __name__ == '__main__':
  _main()
