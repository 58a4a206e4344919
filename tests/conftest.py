"""Shared test set-up: quiet TensorFlow, the repository root on sys.path, a CLI runner."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def run_tool(module: str, *args: str, timeout: float = 600, cwd: str | os.PathLike = ROOT,
             env: dict | None = None) -> subprocess.CompletedProcess:
  """Runs `python -m tools.<module> args...` as a user would: from the repository root, or from
  `cwd` (a `user_dir`: the repository's layout, so relative paths are the README's), with `env`
  added to the environment."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=ROOT, **(env or {}))
  return subprocess.run([sys.executable, '-m', f'tools.{module}', *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def user_dir(path) -> str:
  """`path` made to look like a clone's root for the binaries (its `experiments/` is the
  repository's), so tests pass the README's relative paths (`--workdir=runs/x`) from there
  without writing into the repository."""
  os.makedirs(path, exist_ok=True)
  link = os.path.join(path, 'experiments')
  if not os.path.lexists(link):
    os.symlink(os.path.join(ROOT, 'experiments'), link)
  return str(path)


def assert_bad_input(result: subprocess.CompletedProcess, message: str) -> None:
  """A binary's answer to bad input: exit code 2 and `message` in stderr, no traceback."""
  assert result.returncode == 2, result.stderr[-2000:]
  assert message in result.stderr and 'Traceback' not in result.stderr, result.stderr[-2000:]


def randomize_batch_norm(model) -> None:
  """BN statistics, offsets and scales away from their initial values, so that an untrained
  model's predictions are not all ties (exports are compared by their class ids)."""
  import tensorflow as tf
  for v in model.variables:
    if v.path.endswith(('moving_mean', 'beta', 'bias')):
      v.assign(tf.random.normal(v.shape, stddev=0.2))
    elif v.path.endswith(('moving_variance', 'gamma')):
      v.assign(tf.random.uniform(v.shape, 0.5, 1.5))


@pytest.fixture
def tool():
  return run_tool


def copy_checkpoint(source_dir: str, number: int, target_dir: str) -> None:
  """Makes checkpoint `ckpt-{number}` of source_dir the only (latest) one of target_dir: a run
  "interrupted" at that step, without training a second model up to it."""
  os.makedirs(target_dir)
  for path in glob.glob(os.path.join(source_dir, f'ckpt-{number}.*')):
    shutil.copy(path, target_dir)
  with open(os.path.join(target_dir, 'checkpoint'), 'w') as f:
    f.write(f'model_checkpoint_path: "ckpt-{number}"\nall_model_checkpoint_paths: "ckpt-{number}"\n')


@pytest.fixture(scope='session')
def tiny(tmp_path_factory):
  """The export tests' tiny segmenter, checkpoint, records and SavedModel predictions
  (tests/export_fixture.py)."""
  from tests import export_fixture
  return export_fixture.build(tmp_path_factory.mktemp('tflite'))
