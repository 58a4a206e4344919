"""The bilevel search resumes exactly: a fresh process restoring a run's checkpoint ends where the
uninterrupted run does. (Its own module, so the test runner can run it beside the others.)"""
import os

import numpy as np
import pytest

from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.training import search_task
from tests.conftest import copy_checkpoint
from tests.search_helpers import datasets
from tests.search_helpers import tiny_task


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
  """4 steps straight == a fresh process that resumes from that run's step-3 checkpoint."""
  straight = tiny_task()
  a, b = datasets()
  search_task.run_search(straight, a, b, 4, str(tmp_path / 'straight'),
                         search_task.LoopSettings(checkpoint_every=3), log=lambda *_: None)
  copy_checkpoint(str(tmp_path / 'straight' / 'checkpoints'), 3,
                  str(tmp_path / 'resumed' / 'checkpoints'))
  second = tiny_task()
  a, b = datasets()
  logs = []
  result = search_task.run_search(second, a, b, 4, str(tmp_path / 'resumed'), log=logs.append)
  assert any('resumed from' in line and 'at step 3' in line for line in logs)
  assert result['step'] == 4
  # The whole bilevel state: every model variable (BN moving averages too), both optimisers.
  for x, y in zip(straight.model.variables + straight.weight_optimizer.variables
                  + straight.arch_optimizer.variables,
                  second.model.variables + second.weight_optimizer.variables
                  + second.arch_optimizer.variables):
    np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6, err_msg=x.path)
  saved = Genotype.from_json(tmp_path / 'resumed' / 'genotype.json')
  assert saved.num_layers == 3
  arch = np.load(tmp_path / 'resumed' / 'arch.npz')
  np.testing.assert_allclose(arch['alpha'], second.model.alpha.numpy())
  assert os.listdir(tmp_path / 'resumed' / 'tensorboard')
  assert (tmp_path / 'resumed' / 'architecture.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
