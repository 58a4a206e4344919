"""The bilevel search: which variables each step moves, exact resume."""
import os

import numpy as np
import keras
import pytest

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.training import distribute
from official.autodeeplab.training import search_task
from tests.conftest import copy_checkpoint


def tiny_task(total_steps=4, arch_start_step=1):
  keras.utils.set_random_seed(0)  # the Keras-initialised stem and heads
  config = search_task.SearchConfig(total_steps=total_steps, arch_start_step=arch_start_step)
  return search_task.SearchTask(
      lambda: search_task.build_supernet(3, num_layers=3, filter_multiplier=2), config)


def datasets(seed=0):
  images, labels = synthetic.arrays(4, 40, 40, 3, seed)
  return (input_pipeline.from_arrays(images[:2], labels[:2], 2, 33, seed=1),
          input_pipeline.from_arrays(images[2:], labels[2:], 2, 33, seed=2))


@pytest.fixture(scope='module')
def task():
  return tiny_task()


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


def changed(before, variables):
  return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def test_weight_step_moves_only_weights_and_arch_step_only_arch(task):
  images, labels = next(iter(datasets()[0]))
  model = task.model
  weights, arch = snapshot(model.weight_variables), snapshot(model.arch_variables)
  loss = task.weight_step(images, labels)
  assert np.isfinite(loss)
  assert all(changed(weights, model.weight_variables)) and not any(changed(arch,
                                                                           model.arch_variables))
  weights, arch = snapshot(model.weight_variables), snapshot(model.arch_variables)
  task.arch_step(images, labels)
  assert all(changed(arch, model.arch_variables))
  # BN moving averages are not trainable; trainable weights stay put in an arch step.
  assert not any(changed(weights, model.weight_variables))
  assert task._gradients.experimental_get_tracing_count() == 1  # one traced graph for both


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
  """4 steps straight == a fresh process that resumes from that run's step-3 checkpoint."""
  distribute.disable_graph_optimizer()
  straight = tiny_task()
  a, b = datasets()
  search_task.run_search(straight, a, b, 4, str(tmp_path / 'straight'), checkpoint_every=3,
                         log=lambda *_: None)
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
