"""The bilevel search: which variables each step moves, exact resume, periodic exports and
TensorBoard images, SIGTERM, divergence, workdirs of another supernet, decoding a workdir."""
import os
import signal

import numpy as np
import keras
import pytest
import tensorflow as tf

from official.autodeeplab.search.genotype import Genotype
from official.autodeeplab.errors import DivergedError
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import distribute
from official.autodeeplab import errors
from official.autodeeplab.training import configs
from official.autodeeplab.training import experiment
from official.autodeeplab.training import search_outputs
from official.autodeeplab.training import search_task
from tests.search_helpers import datasets
from tests.search_helpers import run
from tests.search_helpers import tiny_task

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('search_task')

distribute.configure_graph_optimizer('off')  # start-up; the binaries, tested end to end, dedupe first


@pytest.fixture(scope='session')
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
  out = task.weight_step(images, labels)
  assert np.isfinite(out.loss) and out.nonfinite == 0
  assert out.predictions.shape == (2, 33, 33)
  assert all(changed(weights, model.weight_variables)) and not any(changed(arch,
                                                                           model.arch_variables))
  weights, arch = snapshot(model.weight_variables), snapshot(model.arch_variables)
  task.arch_step(images, labels)
  assert all(changed(arch, model.arch_variables))
  # BN moving averages are not trainable; trainable weights stay put in an arch step.
  assert not any(changed(weights, model.weight_variables))
  assert task._gradients.experimental_get_tracing_count() == 1  # one traced graph for both
  assert task._arch_gradients.experimental_get_tracing_count() == 0


@pytest.mark.slow
def test_arch_only_gradients_give_the_same_architecture_step(task):
  """search_config.arch_only_gradients: a second graph without weight gradients, same gradients."""
  images, labels = next(iter(datasets()[1]))
  lean = tiny_task(arch_only_gradients=True)
  for a, b in zip(lean.model.variables, task.model.variables):
    a.assign(b)
  shared = task._gradients(images, labels)
  only = lean._arch_gradients(images, labels)
  np.testing.assert_allclose(only[0], shared[0], rtol=1e-5)
  for a, b in zip(only[3], shared[3][len(task.model.weight_variables):]):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)
  arch = snapshot(lean.model.arch_variables)
  lean.arch_step(images, labels)
  assert all(changed(arch, lean.model.arch_variables))
  assert lean._gradients.experimental_get_tracing_count() == 0


def test_trellis_loop_and_its_gradient_stay_functional_while_ops(task):
  """distribute.functional_while_loops: the search step's loops are not lowered (start-up memory);
  this also notices when TensorFlow changes the internal switch it relies on."""
  images, labels = next(iter(datasets()[1]))
  graph = task._gradients.get_concrete_function(images, labels).graph.as_graph_def()
  nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
  loops = [n for n in nodes if n.op in ('While', 'StatelessWhile')]
  assert len(loops) == 2  # the trellis and its gradient
  assert all(not n.attr['_lower_using_switch_merge'].b for n in loops)
  plain = tf.function(lambda: tf.foldl(lambda a, x: a + x, tf.range(3)))
  lowered = [n for n in plain.get_concrete_function().graph.as_graph_def().node
             if n.op in ('While', 'StatelessWhile')]
  assert lowered and lowered[0].attr['_lower_using_switch_merge'].b  # outside: TF's default


def events(directory):
  """{tag: [steps]} of every summary written under `directory`."""
  tags = {}
  for path in tf.io.gfile.glob(os.path.join(directory, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, []).append(event.step)
  return tags


def test_periodic_exports_summaries_and_progress_line(task, tmp_path):
  start = int(task.step.numpy())
  a, b = datasets()
  lines = []
  settings = experiment.LoopSettings(log_every=1, checkpoint_every=2, export_every=2)
  result = run(task, a, b, start + 4, str(tmp_path), settings, log=lines.append,
               half_sizes=(4, 4))
  step_lines = [line for line in lines if line.startswith('[search] step')]
  assert len(step_lines) == 4
  assert f'step {start + 4}/{start + 4} epoch {(start + 4) / 2:.2f}' in step_lines[-1]
  assert 'loss(trainA)' in step_lines[-1] and 'mIoU(trainB)' in step_lines[-1]
  assert 'img/s ETA' in step_lines[-1]
  tags = events(tmp_path / 'tensorboard')
  exported = [start + 2, start + 4] if start % 2 == 0 else [start + 1, start + 3, start + 4]
  for tag in ('architecture/softmax_alpha', 'architecture/transition_probabilities',
              'architecture/decoded'):
    assert sorted(tags[tag]) == exported, tag
  assert len(tags['miou/trainB']) == 4 and len(tags['loss/trainB']) == 4
  assert int(np.load(tmp_path / 'arch.npz')['step']) == start + 4
  saved = Genotype.from_json(tmp_path / 'genotype.json')
  assert saved == result['genotype']
  # Decoding the workdir's latest checkpoint without training gives the same architecture.
  decoded, transitions, step, expected, _ = search_outputs.decode_checkpoint(str(tmp_path))
  assert decoded == saved and step == start + 4 and transitions.shape == (3, 4, 3)
  assert expected > 0


def test_a_full_disk_at_an_architecture_export_keeps_the_previous_files(task, tmp_path,
                                                                       monkeypatch):
  """ENOSPC injected into the atomic writer: one line naming the file, the last export intact."""
  import errno
  from official.autodeeplab import files
  first = search_outputs.export_architecture(task.model, str(tmp_path), 7)
  written = {name: (tmp_path / name).read_bytes()
             for name in ('arch.npz', 'genotype.json', 'architecture.png')}

  def full_disk(path, mode='r', *args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(files, 'open', full_disk, raising=False)
  with pytest.raises(UserInputError, match=r'arch.npz: cannot write it \(No space left on '
                                           r'device\); the previous version, if any, is intact'):
    search_outputs.export_architecture(task.model, str(tmp_path), 8)
  for name, data in written.items():
    assert (tmp_path / name).read_bytes() == data, name
  assert sorted(os.listdir(tmp_path)) == sorted(written)  # no temporary file left
  assert first == Genotype.from_json(tmp_path / 'genotype.json')


def test_history_and_the_stop_when_the_architecture_is_stable(task, tmp_path):
  """Every export appends a record; with stop_when_stable=2 the search stops at the second export
  in a row with the same genotype after arch_start_step (frozen here: the architecture's
  learning rate is 0), checkpoints there, and a rerun keeps the count: nothing left to do."""
  import dataclasses
  from official.autodeeplab.training import arch_history
  start = int(task.step.numpy())
  a, b = datasets()
  saved = task.config, float(task.arch_optimizer.learning_rate)
  task.config = dataclasses.replace(task.config, arch_start_step=start + 2, stop_when_stable=2)
  task.arch_optimizer.learning_rate.assign(0.0)
  settings = experiment.LoopSettings(log_every=1, checkpoint_every=100, export_every=1)
  try:
    task._stop = task._found = None
    lines = []
    result = run(task, a, b, start + 10, str(tmp_path), settings, log=lines.append,
                 half_sizes=(4, 4))
    assert result['step'] == start + 4 and 'has not changed over the last 2 exports' in (
        result['stopped'])
    assert any(f'stopped at step {start + 4} of {start + 10}' in line for line in lines)
    assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith(f'ckpt-{start + 4}')
    records = arch_history.read(str(tmp_path))
    assert [r['step'] for r in records] == list(range(start + 1, start + 5))
    assert records[-1]['epoch'] == (start + 4) / 2
    assert records[0]['miou_trainB'] is None and records[-1]['miou_trainB'] is not None
    assert records[-1]['genotype'] == Genotype.from_json(tmp_path / 'genotype.json').to_dict()
    assert 0 < records[-1]['alpha_entropy'] <= np.log(8) + 1e-6
    assert 0 < records[-1]['transition_entropy'] <= np.log(3) + 1e-6
    assert sorted(events(tmp_path / 'tensorboard')['architecture/alpha_entropy']) == [
        r['step'] for r in records]
    task._stop = task._found = None  # a new process on the same workdir
    lines = []
    result = run(task, a, b, start + 10, str(tmp_path), settings, log=lines.append,
                 half_sizes=(4, 4))
    assert result['step'] == start + 4 and any('nothing to do' in line for line in lines)
    assert len(arch_history.read(str(tmp_path))) == 4  # no second record for that step
  finally:
    task.config = saved[0]
    task.arch_optimizer.learning_rate.assign(saved[1])
    task._stop = None


def test_the_cost_term_pulls_the_expected_multiply_adds_down(task, tmp_path):
  """With a binding cost weight (a target far below), architecture steps lower the expected
  cells' multiply-adds, which the log and the history record."""
  import dataclasses
  from official.autodeeplab.training import arch_history
  start = int(task.step.numpy())
  a, b = datasets()
  saved = task.config
  task.config = dataclasses.replace(task.config, arch_start_step=0, cost_weight=5.0,
                                    cost_target=1e6, cost_image_size=(65, 65),
                                    cost_filter_multiplier=4)
  saved_model = task.cost_model
  task.cost_model = search_outputs.cost_model(task.config, task.model)
  task._cost = tf.function(task._cost_term)
  try:
    before = float(task._cost()[0])
    settings = experiment.LoopSettings(log_every=1, checkpoint_every=100, export_every=3)
    run(task, a, b, start + 3, str(tmp_path), settings, log=lambda _: None)
    after = float(task._cost()[0])
    assert after < before
    assert arch_history.read(str(tmp_path))[-1]['expected_multiply_adds'] == pytest.approx(
        after, rel=1e-4)
    assert 'cost/expected_multiply_adds' in events(tmp_path / 'tensorboard')
  finally:
    task.config, task._cost, task.cost_model = saved, None, saved_model


def test_the_latency_term_lowers_the_expected_latency(task, tmp_path):
  """The same short search with and without the latency term, from the same start: with it, the
  expected latency ends lower; the history, TensorBoard and the workdir's copy record it; a
  table for another class count is refused."""
  import dataclasses
  from official.autodeeplab.search import latency_table
  from official.autodeeplab.training import arch_history
  from tests.test_latency import fake_table, write
  model = task.model
  table = fake_table(5, filter_multiplier=model.filter_multiplier, num_classes=model.num_classes)
  # A cost with a clear direction: deeper levels and the separable ops cost more.
  for key in table['entries_ms']:
    if key.startswith('op:separable') or key.startswith('aspp:L0'):
      table['entries_ms'][key] *= 20
  path = write(tmp_path / 'table.json', table)
  saved = snapshot = [v.numpy().copy() for v in model.arch_variables]
  saved_config, saved_model, start = task.config, task.cost_model, int(task.step.numpy())
  a, b = datasets()
  results = {}
  try:
    for weight in (0.0, 5.0):
      for variable, value in zip(model.arch_variables, snapshot):
        variable.assign(value)
      task.config = experiment.with_latency_table(dataclasses.replace(
          saved_config, arch_start_step=0, cost_weight=weight, cost_target=1.0,
          latency_table=path))
      task.cost_model = search_outputs.cost_model(task.config, model)
      task._cost = tf.function(task._cost_term) if weight else None
      workdir = tmp_path / f'weight{weight}'
      settings = experiment.LoopSettings(log_every=1, checkpoint_every=100, export_every=4)
      task.step.assign(start)
      run(task, a, b, start + 4, str(workdir), settings, log=lambda _: None)
      record = arch_history.read(str(workdir))[-1]
      results[weight] = record['expected_latency_ms']
      assert record['expected_latency_ms'] == pytest.approx(
          float(task.cost_model.expected(model.alpha, model.transition_probabilities())),
          rel=1e-4)
      assert latency_table.read(str(workdir / latency_table.TABLE_FILE)) == table
    assert results[5.0] < results[0.0]
    assert 'cost/expected_latency_ms' in events(tmp_path / 'weight5.0' / 'tensorboard')
    other = write(tmp_path / 'other.json', fake_table(num_classes=model.num_classes + 1,
                                                      filter_multiplier=model.filter_multiplier))
    with pytest.raises(UserInputError, match='this search needs num_classes'):
      search_outputs.cost_model(dataclasses.replace(task.config, latency_table=other), model)
  finally:
    for variable, value in zip(model.arch_variables, saved):
      variable.assign(value)
    task.config, task.cost_model, task._cost = saved_config, saved_model, None
    task.step.assign(start)


def test_sharpness_is_recorded_and_its_stop_keeps_the_genotype_a_window_back(task, tmp_path,
                                                                            monkeypatch):
  """track_sharpness writes each export's eigenvalue to the history and TensorBoard; with
  stop_on_sharpness=1 a jump of the eigenvalue stops the search and genotype.json is the one of
  the export before (the probe is replaced by growing values: the real one is tested in
  tests/test_search_evidence.py and below, slow)."""
  import dataclasses
  from official.autodeeplab.training import arch_history
  from official.autodeeplab.training import sharpness
  values = iter([1.0, 1.0, 2.0, 2.0])

  class GrowingProbe:
    def __init__(self, model, images, labels, iterations):
      assert images.shape[0] == 2 and iterations == 10
    def measure(self):
      return sharpness.Measurement(next(values), 0.5)

  monkeypatch.setattr(sharpness, 'Probe', GrowingProbe)
  start = int(task.step.numpy())
  a, b = datasets()
  saved = task.config
  task.config = dataclasses.replace(task.config, arch_start_step=start, track_sharpness=True,
                                    stop_on_sharpness=1)
  try:
    task._stop = task._found = task._sharpness = None
    result = run(task, a, b, start + 10, str(tmp_path),
                 experiment.LoopSettings(log_every=1, checkpoint_every=100, export_every=1),
                 log=lambda line: None, half_sizes=(4, 4))
    records = arch_history.read(str(tmp_path))
    assert [r['dominant_eigenvalue'] for r in records] == [1.0, 1.0, 2.0]
    assert all(r['sharpness_seconds'] == 0.5 for r in records)
    assert result['step'] == start + 3 and 'grew from a mean of 1 to 2' in result['stopped']
    kept = Genotype.from_json(tmp_path / 'genotype.json')
    assert kept.to_dict() == records[1]['genotype'] and result['genotype'] == kept
    assert sorted(events(tmp_path / 'tensorboard')['architecture/dominant_eigenvalue']) == [
        start + 1, start + 2, start + 3]
  finally:
    task.config = saved
    task._stop = task._found = task._sharpness = None


@pytest.mark.slow
def test_tracking_sharpness_measures_without_changing_the_search(tmp_path):
  """The real probe on a small supernet: a finite eigenvalue at every export, and alpha / beta
  after the run exactly as without tracking (the probe puts back what it touches)."""
  from official.autodeeplab.training import arch_history

  def searched(workdir, track):
    keras.utils.set_random_seed(0)
    config = experiment.SearchConfig(total_steps=4, arch_start_step=1, track_sharpness=track,
                                     sharpness_iterations=3)
    small = search_task.SearchTask(
        experiment.Experiment.search(config),
        lambda: configs.build_supernet(3, num_layers=2, num_blocks=2, filter_multiplier=2))
    a, b = datasets()
    run(small, a, b, 4, str(workdir), experiment.LoopSettings(log_every=2, checkpoint_every=4,
                                                              export_every=2),
        log=lambda line: None, half_sizes=(4, 4))
    return [v.numpy() for v in small.model.arch_variables]

  tracked = searched(tmp_path / 'tracked', True)
  plain = searched(tmp_path / 'plain', False)
  for x, y in zip(tracked, plain):
    np.testing.assert_array_equal(x, y)
  records = arch_history.read(str(tmp_path / 'tracked'))
  assert [r['step'] for r in records] == [2, 4]
  assert all(np.isfinite(r['dominant_eigenvalue']) and r['sharpness_seconds'] > 0
             for r in records)
  assert 'dominant_eigenvalue' not in arch_history.read(str(tmp_path / 'plain'))[-1]


def test_history_file_and_stable_counting(tmp_path):
  from official.autodeeplab.training import arch_history
  one, other = {'cell': 1}, {'cell': 2}
  records = [{'step': s, 'genotype': g} for s, g in ((5, one), (10, one), (15, other),
                                                     (20, other), (25, other))]
  assert arch_history.stable_run(records, arch_start_step=10) == 3
  assert arch_history.stable_run(records, arch_start_step=20) == 1
  assert arch_history.stable_run(records[:2], arch_start_step=10) == 0
  assert arch_history.stop_reason(records, 10, 4) is None
  assert 'steps 15-25' in arch_history.stop_reason(records, 10, 3)
  for record in records:
    assert arch_history.append(str(tmp_path), record)
  assert not arch_history.append(str(tmp_path), records[-1])  # the same step again
  with open(tmp_path / arch_history.HISTORY_FILE, 'a') as f:
    f.write('{"step": 30, "geno')  # a process killed while writing
  assert arch_history.read(str(tmp_path)) == records


def test_sigterm_checkpoints_then_the_rerun_resumes(task, tmp_path):
  start = int(task.step.numpy())
  a, b = datasets()

  def log(line):  # a scheduler's SIGTERM arrives during step start + 2
    if f'step {start + 2}/' in line:
      os.kill(os.getpid(), signal.SIGTERM)

  settings = experiment.LoopSettings(log_every=1, checkpoint_every=100, export_every=100)
  with pytest.raises(errors.Preempted, match=f'SIGTERM at step {start + 2}'):
    run(task, a, b, start + 6, str(tmp_path), settings, log=log)
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith(f'ckpt-{start + 2}')
  assert Genotype.from_json(tmp_path / 'genotype.json').num_layers == 3
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler was only for the loop
  lines = []
  result = run(task, a, b, start + 3, str(tmp_path), settings,
                                  log=lines.append)
  assert any('resumed from' in line and f'at step {start + 2}' in line for line in lines)
  assert result['step'] == start + 3


def test_workdir_of_another_supernet_is_refused(tmp_path):
  keras.utils.set_random_seed(0)
  small = search_task.SearchTask(experiment.Experiment.search(), lambda: configs.build_supernet(
      3, num_layers=3, filter_multiplier=2))
  tf.train.CheckpointManager(small.checkpoint(), str(tmp_path / 'checkpoints'), 3).save(0)
  before = sorted(os.listdir(tmp_path / 'checkpoints'))
  wider = search_task.SearchTask(experiment.Experiment.search(), lambda: configs.build_supernet(
      3, num_layers=3, filter_multiplier=3))
  a, b = datasets()
  with pytest.raises(UserInputError, match=r'does not match this model \(variable \S+ has shape'):
    run(wider, a, b, 1, str(tmp_path), log=lambda _: None)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_nan_stops_the_search_naming_the_step(task, tmp_path):
  """Last in this module: it leaves the shared task's weights NaN."""
  start = int(task.step.numpy())
  a, b = datasets()

  def log(line):  # diverge after the first step: NaN weights give NaN logits
    if f'step {start + 1}/' in line:
      task.model.level_weights[0].assign(tf.fill(task.model.level_weights[0].shape, np.nan))

  settings = experiment.LoopSettings(log_every=1, checkpoint_every=1)
  with pytest.raises(DivergedError,
                     match=rf'step {start + 2}: the trainA loss is not finite.*ckpt-{start + 1}'):
    run(task, a, b, start + 5, str(tmp_path), settings, log=log)
  assert tf.train.latest_checkpoint(str(tmp_path / 'checkpoints')).endswith(f'ckpt-{start + 1}')


@pytest.mark.slow
def test_recomputing_search_steps_on_two_replicas():
  """MirroredStrategy over two logical CPUs with recompute=True: the written-out layer loop's
  gradient is all-reduced and the in-place SGD updates each replica's copy alike. In a fresh
  process: logical devices must be set before TensorFlow starts."""
  import subprocess
  import sys
  from tests.conftest import ROOT
  code = '''
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from official.autodeeplab.modeling import supernet
from official.autodeeplab.training import experiment, search_task
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
task = search_task.SearchTask(
    experiment.Experiment.search(),
    lambda: supernet.Supernet(3, num_layers=3, filter_multiplier=2, recompute=True), strategy)
rng = np.random.default_rng(0)
batch = tf.data.Dataset.from_tensors((tf.constant(rng.normal(size=[4, 33, 33, 3]), tf.float32),
                                      tf.constant(rng.integers(0, 3, [4, 33, 33]), tf.int32)))
images, labels = next(iter(strategy.experimental_distribute_dataset(batch)))
before = [v.numpy().copy() for v in task.model.trainable_variables]
losses = [task.weight_step(images, labels).loss, task.arch_step(images, labels).loss]
# (the stem's and heads' BN moving statistics stay per replica: the search never reads them)
replicas_agree = all(np.array_equal(*[c.numpy() for c in v.value.values])
                     for v in task.model.trainable_variables)
moved = all(not np.array_equal(b, v.numpy())
            for b, v in zip(before, task.model.trainable_variables))
print("finite", bool(np.isfinite(losses).all()), "agree", replicas_agree, "moved", moved)
'''
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'finite True agree True moved True' in result.stdout
