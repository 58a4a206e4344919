"""The bilevel search: which variables each step moves, exact resume, and the binary."""
import json
import os

import numpy as np
import keras
import pytest

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.training import distribute
from official.autodeeplab.training import search_task


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


def test_resume_is_exact(tmp_path):
  """3 steps, stop, 1 more step after a restart == 4 steps straight."""
  distribute.disable_graph_optimizer()
  straight = tiny_task()
  a, b = datasets()
  search_task.run_search(straight, a, b, 4, str(tmp_path / 'straight'), log=lambda *_: None)
  first = tiny_task()
  a, b = datasets()
  search_task.run_search(first, a, b, 3, str(tmp_path / 'resumed'), checkpoint_every=1,
                         log=lambda *_: None)
  second = tiny_task()
  a, b = datasets()
  logs = []
  result = search_task.run_search(second, a, b, 4, str(tmp_path / 'resumed'), log=logs.append)
  assert any('resumed from' in line for line in logs)
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


def test_search_binary_end_to_end(tool, tmp_path):
  from official.autodeeplab.data import convert
  convert.convert('synthetic', str(tmp_path / 'data'), 'train', 2, num_examples=6,
                  image_size=40, num_classes=3, progress=False)
  result = tool('search', f'--workdir={tmp_path}', '--gin_file=experiments/search/base.gin',
                f'--tfrecord_dir={tmp_path / "data"}',
                '--gin_bindings=build_supernet.num_layers = 3',
                '--gin_bindings=build_supernet.filter_multiplier = 2',
                '--gin_bindings=build_supernet.recompute = False',
                '--gin_bindings=search_config.arch_start_step = 1',
                '--num_steps=2', '--crop_size=33')
  assert result.returncode == 0, result.stderr[-3000:]
  genotype = json.loads((tmp_path / 'genotype.json').read_text())
  assert len(genotype['path']) == 3 and len(genotype['cell']) == 5


@pytest.mark.parametrize('args,message', [
    (['--gin_file=nope.gin'], '--gin_file=nope.gin: no such file'),
    (['--gin_bindings=build_supernet.no_such_arg = 1'], '--gin_file/--gin_bindings'),
    (['--crop_size=0'], '--crop_size=0: must be positive'),
    (['--strategy=gpu_farm'], '--strategy=gpu_farm: expected one of'),
])
def test_search_binary_bad_input(tool, tmp_path, args, message):
  result = tool('search', f'--workdir={tmp_path}', '--num_steps=1', *args)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
  assert 'Traceback' not in result.stderr


def test_search_on_two_replicas(tmp_path):
  """MirroredStrategy over two logical CPUs: per-replica steps, all-reduced updates, resume data.

  In a fresh process: logical devices must be set before TensorFlow initialises, and a second
  MirroredStrategy in the test process could break its collectives."""
  import subprocess
  import sys
  from tests.conftest import ROOT
  code = f'''
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from official.autodeeplab.data import convert, input_pipeline
from official.autodeeplab.training import distribute, search_task
distribute.disable_graph_optimizer()
convert.convert("synthetic", "{tmp_path}/data", "train", 2, num_examples=6, image_size=40,
                num_classes=3, progress=False)
files = input_pipeline.split_files("{tmp_path}/data", "train")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
config = search_task.SearchConfig(total_steps=2, arch_start_step=1)
task = search_task.SearchTask(
    lambda: search_task.build_supernet(3, num_layers=3, filter_multiplier=2), config, strategy)
a, b = (input_pipeline.from_tfrecords(files, 2, 33, half=h) for h in ("trainA", "trainB"))
result = search_task.run_search(task, a, b, 2, "{tmp_path}/run", log=lambda *_: None)
print("replicas", strategy.num_replicas_in_sync, "step", result["step"])
'''
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'replicas 2 step 2' in result.stdout
  assert (tmp_path / 'run' / 'genotype.json').exists()


def test_search_binary_names_a_corrupt_shard(tool, tmp_path):
  from official.autodeeplab.data import convert
  from official.autodeeplab.data import input_pipeline
  convert.convert('synthetic', str(tmp_path / 'data'), 'train', 2, num_examples=6,
                  image_size=40, num_classes=3, progress=False)
  files = input_pipeline.split_files(str(tmp_path / 'data'), 'train')
  for path in files:
    with open(path, 'r+b') as f:
      f.seek(40)
      f.write(b'\x00garbage\x00')
  result = tool('search', f'--workdir={tmp_path / "run"}', f'--tfrecord_dir={tmp_path / "data"}',
                '--gin_file=experiments/search/synthetic_quickstart.gin', '--num_steps=1',
                '--crop_size=33')
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: {files[0]}: corrupt TFRecord shard; convert it again')
