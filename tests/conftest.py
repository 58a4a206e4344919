"""Shared test set-up: quiet TensorFlow, the repository root on sys.path, a CLI runner."""
import os
import subprocess
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def run_tool(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m tools.<module> args...` from the repository root, as a user would."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, '-m', f'tools.{module}', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tool():
  return run_tool
