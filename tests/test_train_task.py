"""The retrain step and loop: exact resume (drop path on), a level-1-first genotype, NaN stop,
workdirs of another model refused."""
import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.errors import DivergedError
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.training import configs
from official.autodeeplab.training import experiment
from official.autodeeplab.training import distribute
from official.autodeeplab.training import loop
from official.autodeeplab.training import best_weights
from official.autodeeplab.training import checkpoints
from official.autodeeplab import errors
from official.autodeeplab import files
from official.autodeeplab.training import run_description
from official.autodeeplab.training import train_task
from tests.conftest import copy_checkpoint

# As the tools run: Grappler off. (With it on, its fused batch norm + ReLU turns NaN into 0 on CPU,
# hiding the divergence the NaN test provokes.)
distribute.configure_graph_optimizer('off')

# Starts at level 1 (stride 8): the decoder reads the stem; goes finer, then coarser again.
GENOTYPE = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(1, 0, 1))
CONFIG = experiment.TrainConfig(total_steps=4, batch_size=2, crop_size=33, learning_rate=0.02,
                                log_every=1, checkpoint_every=1, image_summary_every=2)
IMAGES, LABELS = synthetic.arrays(6, 40, 40, 3, seed=1)


def make_task(config=CONFIG, filter_multiplier=2, genotype=GENOTYPE):
  keras.utils.set_random_seed(0)
  return train_task.TrainTask(
      experiment.Experiment.train(config),
      lambda: configs.retrain_model(genotype, 3, filter_multiplier=filter_multiplier,
                                    drop_path_keep_prob=0.5, batch_norm_momentum=0.9))


def dataset():
  return input_pipeline.from_arrays(IMAGES, LABELS, CONFIG.batch_size, CONFIG.crop_size, seed=3)


def train(task, data, workdir, stop_at=None, log=print):
  """The loop over `data` until `stop_at` (default: the configured total)."""
  task.set_inputs(data)
  return loop.run(task, workdir, stop_at or task.config.total_steps, log=log)


def state(task):
  return [v.numpy() for v in task.model.variables + task.optimizer.variables]


def test_resume_equals_uninterrupted_training(tmp_path):
  """4 steps straight == a fresh process that resumes from that run's step-2 checkpoint."""
  config = dataclasses.replace(CONFIG, checkpoint_every=2)
  straight = make_task(config)
  result = train(straight, dataset(), str(tmp_path / 'a'), log=lambda _: None)
  assert result['step'] == 4 and np.isfinite(result['cross_entropy'])
  expected = state(straight)
  copy_checkpoint(str(tmp_path / 'a' / 'checkpoints'), 2, str(tmp_path / 'b' / 'checkpoints'))
  lines = []
  second = make_task(config)  # a new process would build everything afresh, then restore
  train(second, dataset(), str(tmp_path / 'b'), log=lines.append)
  assert any('resumed from' in line and 'at step 2' in line for line in lines)
  for got, want in zip(state(second), expected):
    np.testing.assert_array_equal(got, want)
  # Drop path was active (keep 0.5 at the end) and seeded by the step: that is why the two agree.
  drops = [l for l in second.model._flatten_layers() if hasattr(l, 'current_keep_prob')]
  assert drops and float(drops[-1].progress) == pytest.approx(3 / 4)
  assert int(drops[-1].step.numpy()) == 3
  assert os.listdir(tmp_path / 'b' / 'tensorboard')


def test_every_variable_and_the_iterator_are_checkpointed(tmp_path):
  task = make_task()
  train(task, dataset(), str(tmp_path), stop_at=1, log=lambda _: None)
  saved = [name for name, _ in tf.train.list_variables(str(tmp_path / 'checkpoints'))]
  values = [n for n in saved if n.endswith('VARIABLE_VALUE')]
  # Each variable is saved once, under its shortest path (trainable ones under the optimizer).
  unique = {id(v) for v in task.model.variables + task.optimizer.variables + [task.step]
            + list(task.loss_scale.variables)}
  assert 'save_counter/.ATTRIBUTES/VARIABLE_VALUE' in values
  assert len(values) - 1 == len(unique)
  assert any(n.startswith('iterator/') for n in saved) and 'step/.ATTRIBUTES/VARIABLE_VALUE' in saved


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  images = IMAGES.astype(np.float32)
  poisoned = np.concatenate([images[:4], np.full_like(images[:2], np.nan)])
  data = tf.data.Dataset.from_tensor_slices((input_pipeline.normalize(poisoned),
                                             LABELS.astype(np.int32)))
  data = data.map(lambda i, l: (i[:33, :33], l[:33, :33])).batch(2)
  task = make_task()
  message = r'step 3: the loss is not finite.*NaN/inf logits.*kept: \S+ckpt-2'
  with pytest.raises(DivergedError, match=message):
    train(task, data, str(tmp_path), log=lambda _: None)
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith('ckpt-2')


def test_workdir_of_another_model_is_refused(tmp_path):
  task = make_task()
  train(task, dataset(), str(tmp_path), stop_at=1, log=lambda _: None)
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  wider = make_task(filter_multiplier=3)
  mismatch = r'variable \S+ has shape \(4,\) in the checkpoint, \(6,\) in this model'
  with pytest.raises(UserInputError, match=mismatch):
    train(wider, dataset(), str(tmp_path), log=lambda _: None)
  # Same variable shapes, other genotype (an avg pool instead of a max pool): model.json says so.
  cell = [list(block) for block in GENOTYPE.cell]
  other = Genotype(cell=cell, path=(1, 0, 0))
  with pytest.raises(UserInputError, match='holds a run of another model'):
    run_description.check_or_write_model(str(tmp_path), run_description.model_description(
        other, 2, 3, 'synthetic'))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_load_trained_model_restores_the_weights(tmp_path):
  task = make_task()
  train(task, dataset(), str(tmp_path), stop_at=1, log=lambda _: None)
  model, description, path = checkpoints.load_trained_model(str(tmp_path))
  assert path.endswith('ckpt-1') and description['model_size'] is None
  images = tf.random.normal([1, 33, 33, 3])
  np.testing.assert_allclose(model(images), task.model(images, training=False), atol=1e-5)
  with pytest.raises(UserInputError, match='checkpoint=nope'):
    checkpoints.load_trained_model(str(tmp_path), 'nope')
  with pytest.raises(UserInputError, match='no model.json'):
    checkpoints.load_trained_model(str(tmp_path / 'checkpoints'))


def test_bad_config_values():
  with pytest.raises(UserInputError, match='train_config.crop_size=0'):
    experiment.TrainConfig(crop_size=0).validate()
  with pytest.raises(UserInputError, match='train_config'):
    configs.train_config(nonsense=1)
  for fraction in (0.0, 1.5):
    with pytest.raises(UserInputError, match=f'top_k_percent_pixels={fraction}: expected a '
                                             r'fraction in \(0, 1\]'):
      experiment.TrainConfig(top_k_percent_pixels=fraction).validate()
  with pytest.raises(UserInputError, match='train_config.eval_every=-1'):
    experiment.TrainConfig(eval_every=-1).validate()


@pytest.mark.slow
def test_train_and_evaluate_on_two_replicas(tmp_path):
  """MirroredStrategy over two logical CPUs: sync BN, all-reduced updates, per-replica confusion
  matrices summed. In a fresh process: logical devices must be set before TensorFlow starts."""
  import subprocess
  import sys
  from tests.conftest import ROOT
  code = f'''
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.training import (configs, distribute, evaluation, experiment, loop,
                                           train_task)
distribute.configure_graph_optimizer('off')
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
genotype = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(1, 0, 1))
config = experiment.TrainConfig(total_steps=2, batch_size=4, crop_size=33, log_every=1)
task = train_task.TrainTask(experiment.Experiment.train(config),
                            lambda: configs.retrain_model(genotype, 3, filter_multiplier=2,
                                                          drop_path_keep_prob=0.5), strategy)
bns = [l for l in task.model._flatten_layers() if hasattr(l, "synchronized")]
images, labels = synthetic.arrays(6, 40, 40, 3, seed=1)
data = input_pipeline.from_arrays(images, labels, 4, 33)
task.set_inputs(data)
result = loop.run(task, "{tmp_path}/run", config.total_steps, log=lambda _: None)
evaluator = evaluation.Evaluator(task.model, 3, (1.0, 0.75), True, strategy)
batches = tf.data.Dataset.from_tensor_slices(dict(
    image=input_pipeline.normalize(images), label=labels.astype(np.int32),
    filename=[str(i) for i in range(6)], height=[40] * 6, width=[40] * 6)).batch(2)
scores = evaluator.run(batches)
total = int(evaluator.metrics.confusion_matrix().sum())
print("replicas", strategy.num_replicas_in_sync, "step", result["step"],
      "sync", all(l.synchronized for l in bns), "images", scores["num_images"], "pixels", total)
'''
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'replicas 2 step 2 sync True images 6 pixels {6 * 40 * 40}' in result.stdout


def test_sigterm_checkpoints_the_current_step(tmp_path):
  import signal
  task = make_task()

  def log(line):
    if line.startswith('[train] step 2/'):
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(errors.Preempted, match='SIGTERM at step 2'):
    train(task, dataset(), str(tmp_path), log=log)
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith('ckpt-2')
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_signal_during_after_step_still_saves_that_step(tmp_path):
  """Ctrl-C while step 1's image summaries (or a validation) run: the decision to save was taken
  before; the loop must still save step 1, as the stop message says."""
  import signal
  task = make_task(dataclasses.replace(CONFIG, checkpoint_every=100, image_summary_every=1))
  after_step = task.after_step

  def interrupted(*args):
    os.kill(os.getpid(), signal.SIGINT)
    return after_step(*args)

  task.after_step = interrupted
  with pytest.raises(errors.Preempted, match=r'SIGINT at step 1: checkpoint \S+ckpt-1 '
                                                'written') as raised:
    train(task, dataset(), str(tmp_path), log=lambda _: None)
  assert raised.value.exit_code == 130
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith('ckpt-1')


def test_validation_keeps_the_best_weights_across_rotation_and_resume(tmp_path):
  """eval_every=1: every step is scored; best/ holds the highest-scoring step's weights, apart
  from the rotated checkpoints, and a resumed run compares against it."""
  import re
  from official.autodeeplab.training import evaluation
  val = tf.data.Dataset.from_tensor_slices(dict(
      image=input_pipeline.normalize(IMAGES), label=LABELS.astype(np.int32),
      filename=[str(i) for i in range(6)], height=[40] * 6, width=[40] * 6)).batch(2)
  scores = []

  def run(total_steps):
    task = make_task(dataclasses.replace(CONFIG, eval_every=1, max_checkpoints=1,
                                         total_steps=total_steps))
    task.set_validation(val, 'val', ['a', 'b', 'c'])
    lines = []
    train(task, dataset(), str(tmp_path), log=lines.append)
    scores.extend(float(m.group(1)) for m in (re.search(r'val mIoU\(val\) ([\d.]+)', line)
                                              for line in lines) if m)

  run(3)
  assert len(scores) == 3
  best = best_weights.read_best(str(tmp_path))
  assert best['split'] == 'val' and f'{100 * best["miou"]:.1f}' == f'{max(scores):.1f}'
  assert f'{scores[best["step"] - 1]:.1f}' == f'{max(scores):.1f}'
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['checkpoint', 'ckpt-3.data-00000-of-00001',
                                                          'ckpt-3.index']
  model, _, path = checkpoints.load_trained_model(str(tmp_path), 'best')
  assert os.path.join('best', 'ckpt') in path
  assert evaluation.Evaluator(model, 3).run(val)['miou'] == pytest.approx(best['miou'], abs=1e-5)
  run(5)  # resumed from ckpt-3: two more validations against the kept best
  assert len(scores) == 5
  resumed = best_weights.read_best(str(tmp_path))
  assert f'{100 * resumed["miou"]:.1f}' == f'{max(scores):.1f}' and resumed['miou'] >= best['miou']
  with pytest.raises(UserInputError, match='checkpoint=best: .* has no best/best.json'):
    checkpoints.resolve_checkpoint(str(tmp_path / 'nothing'), 'best')


def test_an_unreadable_latest_checkpoint_falls_back_and_is_set_aside(tmp_path):
  import glob
  from official.autodeeplab.utils import workdir_lock
  config = dataclasses.replace(CONFIG, checkpoint_every=1)
  train(make_task(config), dataset(), str(tmp_path), stop_at=3, log=lambda _: None)
  directory = tmp_path / 'checkpoints'
  data, = glob.glob(str(directory / 'ckpt-3.data-*'))
  with open(data, 'r+b') as f:
    f.truncate(100)  # a copy cut short
  workdir_lock.lock(str(tmp_path))  # the one writer: it may set the damaged checkpoint aside
  lines = []
  train(make_task(config), dataset(), str(tmp_path), stop_at=4, log=lines.append)
  assert any('ckpt-3 is unreadable' in line and 'moved aside' in line for line in lines), lines
  assert any('resumed from' in line and line.endswith('ckpt-2 at step 2') for line in lines)
  assert os.path.exists(directory / 'corrupt-ckpt-3' / os.path.basename(data))  # kept
  assert tf.train.latest_checkpoint(str(directory)).endswith('ckpt-4')
  for data in glob.glob(str(directory / 'ckpt-*.data-*')):  # nothing readable left
    with open(data, 'r+b') as f:
      f.truncate(10)
  with pytest.raises(UserInputError, match=r'none of its \d checkpoint\(s\) can be read'):
    train(make_task(config), dataset(), str(tmp_path), stop_at=5, log=lambda _: None)


def test_a_full_disk_at_a_checkpoint_stops_in_one_line_keeping_the_last(tmp_path, monkeypatch):
  """An injected ENOSPC at the second checkpoint (CI runs as root, which ignores read-only
  permission bits, and cannot always mount a small tmpfs)."""
  save = tf.train.CheckpointManager.save

  def full_disk(manager, checkpoint_number=None, **kwargs):
    if checkpoint_number == 2:
      raise tf.errors.ResourceExhaustedError(None, None, 'ckpt-2_temp: No space left on device')
    return save(manager, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, 'save', full_disk)
  config = dataclasses.replace(CONFIG, checkpoint_every=1)
  with pytest.raises(UserInputError, match=r'checkpoints: cannot write checkpoint 2 \(ckpt-2_temp: '
                                           r'No space left on device\); the last one written, '
                                           r'\S+ckpt-1, is intact'):
    train(make_task(config), dataset(), str(tmp_path), stop_at=3, log=lambda _: None)
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith('ckpt-1')


def test_an_unwritable_file_is_one_line_and_leaves_the_old_one(tmp_path):
  (tmp_path / 'eval.json').write_text('old')
  files.write_text(str(tmp_path / 'eval.json'), 'new')
  assert (tmp_path / 'eval.json').read_text() == 'new'
  (tmp_path / 'not_a_dir').write_text('')
  with pytest.raises(UserInputError, match=r'not_a_dir/eval.json: cannot write it \(.+\); the '
                                           'previous version'):
    files.write_text(str(tmp_path / 'not_a_dir' / 'eval.json'), 'x')
  assert sorted(os.listdir(tmp_path)) == ['eval.json', 'not_a_dir']
