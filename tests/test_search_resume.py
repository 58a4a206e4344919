"""The bilevel search resumes exactly: a fresh process restoring a run's checkpoint ends where the
uninterrupted run does. (Its own module, so the test runner can run it beside the others.)"""
import os

import numpy as np
import pytest

from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.training import checkpoints
from official.autodeeplab.training import experiment
from tests.conftest import copy_checkpoint
from tests.search_helpers import datasets
from tests.search_helpers import run
from tests.search_helpers import tiny_task


def state(task):
  """The whole bilevel state: every model variable (BN moving averages too), both optimisers."""
  return [v.numpy().copy() for v in task.model.variables + task.weight_optimizer.variables
          + task.arch_optimizer.variables]


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
  """4 steps straight == resuming from that run's step-3 checkpoint and stepping once more.

  One supernet is traced (tracing dominates this test): the same task, its state restored to
  step 3, stands in for a restarted process; that a freshly built task restores every variable
  of the checkpoint is checked without stepping it.
  """
  task = tiny_task()
  a, b = datasets()
  run(task, a, b, 4, str(tmp_path / 'straight'), experiment.LoopSettings(checkpoint_every=3),
      log=lambda *_: None)
  straight = state(task)
  copy_checkpoint(str(tmp_path / 'straight' / 'checkpoints'), 3,
                  str(tmp_path / 'resumed' / 'checkpoints'))
  fresh = tiny_task()  # built, never traced: restoring is all it does
  checkpoints.restore(fresh.checkpoint(), str(tmp_path / 'resumed' / 'checkpoints' / 'ckpt-3'),
                    str(tmp_path), partial=True)
  at_step_3 = state(fresh)
  a, b = datasets()
  logs = []
  result = run(task, a, b, 4, str(tmp_path / 'resumed'), log=logs.append)
  assert any('resumed from' in line and 'at step 3' in line for line in logs)
  assert result['step'] == 4
  for x, y in zip(straight, state(task)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  # the restored step-3 state is neither the initial nor the final one
  assert any(not np.array_equal(x, y) for x, y in zip(at_step_3, straight))
  assert int(fresh.step.numpy()) == 3
  saved = Genotype.from_json(tmp_path / 'resumed' / 'genotype.json')
  assert saved.num_layers == 3
  arch = np.load(tmp_path / 'resumed' / 'arch.npz')
  np.testing.assert_allclose(arch['alpha'], task.model.alpha.numpy())
  assert os.listdir(tmp_path / 'resumed' / 'tensorboard')
  assert (tmp_path / 'resumed' / 'architecture.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
