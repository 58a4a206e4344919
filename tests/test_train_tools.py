"""tools/train and tools/evaluate as a user runs them, from a clone's root with the README's
relative paths (`--workdir=runs/train`): a short synthetic retrain scores well above chance,
evaluate writes eval.json and overlays, an interrupted run resumes, bad input is one line and exit
code 2."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from tests.conftest import assert_bad_input
from tests.conftest import run_tool as run_from_root
from tests.conftest import user_dir

# A small found-like genotype (4 layers, the quickstart's search depth) keeps tracing short.
# One worker runs the module: its fixture trains once (40 steps: well above chance already).
pytestmark = pytest.mark.xdist_group('train_tools')
STEPS = 40

SMALL = Genotype(cell=PAPER_GENOTYPE.cell[:3], path=(0, 0, 1, 1))


ROOT_DIR = {}  # the module's user directory: every relative path below is relative to it


def run_tool(module, *args, **kwargs):
  """The binary run from the module's user directory (a clone's root, as the README runs it)."""
  return run_from_root(module, *args, cwd=ROOT_DIR['path'], **kwargs)


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('retrain')
  ROOT_DIR['path'] = user_dir(root)
  data = 'runs/data'
  for split, count in (('train', 24), ('val', 8)):
    result = run_tool('convert_dataset', '--dataset=synthetic', f'--output_dir={data}',
                      f'--split={split}', f'--num_examples={count}', '--image_size=64',
                      '--num_shards=2')
    assert result.returncode == 0, result.stderr
  genotype = 'runs/genotype.json'
  SMALL.to_json(str(root / genotype))
  workdir = 'runs/train'
  result = run_tool('train', f'--workdir={workdir}', f'--tfrecord_dir={data}',
                    f'--genotype={genotype}', '--gin_file=experiments/retrain/synthetic.gin',
                    f'--num_steps={STEPS}')
  assert result.returncode == 0, result.stderr[-3000:]
  return {'root': root, 'data': data, 'workdir': workdir, 'genotype': genotype,
          'train_stdout': result.stdout, 'train_stderr': result.stderr}


@pytest.fixture(autouse=True)
def _in_the_user_dir(trained, monkeypatch):
  """The test reads what the binaries wrote through the same relative paths."""
  monkeypatch.chdir(trained['root'])


def test_train_writes_its_workdir_and_a_clean_log(trained):
  workdir = trained['workdir']
  assert sorted(os.listdir(workdir)) == ['.lock', 'checkpoints', 'model.json',
                                         'operative_config.gin', 'tensorboard']
  with open(os.path.join(workdir, 'model.json')) as f:
    model = json.load(f)
  assert model['filter_multiplier'] == 4 and model['num_classes'] == 5
  assert model['dataset'] == 'synthetic' and model['genotype']['path'] == [0, 0, 1, 1]
  assert 'train_config.crop_size = 65' in open(os.path.join(workdir, 'operative_config.gin')).read()
  lines = trained['train_stdout'].splitlines()
  assert any(f'step {STEPS}/{STEPS}' in line and 'img/s' in line and 'ETA' in line
             for line in lines)
  for noise in ('cuInit', 'cuda drivers', 'absl::InitializeLog', 'oneDNN'):
    assert noise not in trained['train_stderr'] + trained['train_stdout']


def test_evaluate_scores_well_above_chance_and_saves_overlays(trained):
  predictions = str(trained['root'] / 'predictions')
  result = run_tool('evaluate', f'--workdir={trained["workdir"]}',
                    f'--tfrecord_dir={trained["data"]}', '--split=val',
                    f'--save_predictions={predictions}', '--scales=0.75,1', '--flip')
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(trained['workdir'], 'eval.json')) as f:
    report = json.load(f)
  assert set(report) >= {'miou', 'pixel_accuracy', 'per_class_iou', 'num_images', 'scales',
                         'flip', 'checkpoint'}
  assert report['num_images'] == 8 and report['scales'] == [0.75, 1.0] and report['flip']
  assert report['checkpoint'].endswith(f'ckpt-{STEPS}')
  assert list(report['per_class_iou']) == ['background', 'shape1', 'shape2', 'shape3', 'shape4']
  # Chance: predicting the majority class everywhere gives about 0.16 here (5 classes).
  assert report['miou'] > 0.35, report
  assert 'mIoU' in result.stdout and 'shape1' in result.stdout
  files = sorted(os.listdir(predictions))
  assert len(files) == 3 * 8
  overlay = np.asarray(Image.open(os.path.join(predictions, files[2])))
  ids = np.asarray(Image.open(os.path.join(predictions, files[0])))
  assert files[2].endswith('_overlay.png') and overlay.shape == (64, 64, 3)
  assert ids.shape == (64, 64) and ids.max() < 5
  # eval.json's confusion matrix is the one the saved predictions and the labels give by hand.
  import tensorflow as tf
  from official.autodeeplab.data import example
  from official.autodeeplab.data import input_pipeline
  expected = np.zeros([5, 5], np.int64)
  for features in tf.data.TFRecordDataset(input_pipeline.split_files(trained['data'], 'val')):
    parsed = example.parse(features)
    labels = parsed['label'].numpy().astype(np.int64)
    name = parsed['filename'].numpy().decode()
    predicted = np.asarray(Image.open(os.path.join(predictions, f'{name}.png'))).astype(np.int64)
    valid = labels != 255
    expected += np.bincount(labels[valid] * 5 + predicted[valid], minlength=25).reshape(5, 5)
  np.testing.assert_array_equal(report['confusion_matrix'], expected)
  assert os.path.getsize(os.path.join(trained['workdir'], 'confusion.png')) > 1000


def test_workdir_of_another_model_is_refused(trained):
  result = run_tool('train', f'--workdir={trained["workdir"]}',
                    f'--tfrecord_dir={trained["data"]}', f'--genotype={trained["genotype"]}',
                    '--gin_file=experiments/retrain/synthetic.gin', '--filter_multiplier=6')
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and 'in the checkpoint, (6,) in this model' in lines[0], lines


def test_train_refuses_an_invalid_genotype(trained, tmp_path):
  bad = tmp_path / 'genotype.json'
  bad.write_text(json.dumps({**SMALL.to_dict(), 'path': [2, 2]}))
  result = run_tool('train', f'--workdir={tmp_path / "run"}', f'--tfrecord_dir={trained["data"]}',
                    f'--genotype={bad}')
  assert result.returncode == 2 and 'path[0]' in result.stderr and str(bad) in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


TRAIN_BAD = [
    (['--genotype=missing.json'], 'missing.json'),
    (['--split=test'], "no shards of split 'test'"),
    (['--batch_size=0'], '--batch_size=0'),
    (['--gin_bindings=train_config.crop_sise = 3'], 'crop_sise'),
    (['--gin_bindings=train_config.top_k_percent_pixels = 1.5'], 'top_k_percent_pixels=1.5'),
    (['--gin_bindings=train_config.eval_every = 2', '--eval_split=nope'],
     "no shards of split 'nope'"),
    (['--precision=float8'], '--precision=float8: expected one of float32, bfloat16, float16'),
    (['--precision=float16', '--strategy=tpu'], '--precision=float16: TPUs compute in bfloat16'),
]
EVALUATE_BAD = [
    (['--split=test'], "no shards of split 'test'"),
    (['--scales=1,zero'], '--scales=1,zero'),
    (['--checkpoint=/nope/ckpt-3'], '--checkpoint=/nope/ckpt-3'),
    (['--checkpoint=best'], '--checkpoint=best: '),
    (['--precision=fp16'], '--precision=fp16: expected one of float32, bfloat16, float16'),
    (['--gin_bindings=inference_options.flips = True'],
     "--gin_bindings (binding 1): Configurable 'inference_options' doesn't have a parameter named "
     "'flips'"),
]


@pytest.fixture(scope='session')
def bad_input_results(trained, tmp_path_factory):
  """TRAIN_BAD and EVALUATE_BAD, each binary's cases in one process (`tests/cli_batch.py`)."""
  from tests.cli_batch import run_batch
  root = tmp_path_factory.mktemp('bad_train')
  train = run_batch('train', [
      [f'--workdir={root / str(i)}', f'--tfrecord_dir={trained["data"]}',
       '--gin_file=experiments/retrain/synthetic.gin', *args]
      for i, (args, _) in enumerate(TRAIN_BAD)], cwd=ROOT_DIR['path'])
  evaluate = run_batch('evaluate', [
      [f'--workdir={trained["workdir"]}', f'--tfrecord_dir={trained["data"]}', *args]
      for args, _ in EVALUATE_BAD], cwd=ROOT_DIR['path'])
  return {'train': train, 'evaluate': evaluate}


@pytest.mark.parametrize('tool,case', [('train', i) for i in range(len(TRAIN_BAD))] +
                         [('evaluate', i) for i in range(len(EVALUATE_BAD))])
def test_train_and_evaluate_bad_input(bad_input_results, tool, case):
  message = (TRAIN_BAD if tool == 'train' else EVALUATE_BAD)[case][1]
  assert_bad_input(bad_input_results[tool][case], message)


@pytest.mark.slow
def test_resume_in_bfloat16_and_evaluate_in_it(trained, tmp_path):
  """A float32 workdir continues in bfloat16 (model.json then says so); bfloat16 evaluation
  scores what float32's does, to a point."""
  import shutil
  workdir = str(tmp_path / 'train')
  shutil.copytree(trained['workdir'], workdir, ignore=shutil.ignore_patterns('.lock'))
  result = run_tool('train', f'--workdir={workdir}', f'--tfrecord_dir={trained["data"]}',
                    f'--genotype={trained["genotype"]}', f'--num_steps={STEPS + 2}',
                    '--gin_file=experiments/retrain/synthetic.gin', '--precision=bfloat16')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'bfloat16 (mixed)' in result.stdout and 'resumed from' in result.stdout
  assert f'step {STEPS + 2}/{STEPS + 2}' in result.stdout
  with open(os.path.join(workdir, 'model.json')) as f:
    assert json.load(f)['precision'] == 'bfloat16'
  assert 'runtime_options.precision = \'bfloat16\'' in open(
      os.path.join(workdir, 'operative_config.gin')).read()
  scores = {}
  for precision in ('float32', 'bfloat16'):
    result = run_tool('evaluate', f'--workdir={workdir}', f'--tfrecord_dir={trained["data"]}',
                      f'--precision={precision}')
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(workdir, 'eval.json')) as f:
      report = json.load(f)
    assert report['precision'] == precision
    scores[precision] = report['miou']
  assert abs(scores['bfloat16'] - scores['float32']) < 0.03, scores


def test_evaluate_refuses_records_of_another_class_list(trained, tmp_path):
  """Records with as many classes but other names (a user's folder): refused, naming one."""
  from tests import data_trees
  classes = ['background', 'road', 'bus', 'sign', 'tree']
  data_trees.folder(tmp_path / 'other', 'flat', count=8, size=(40, 40), spec={
      'name': 'other', 'class_names': classes, 'label_format': 'ids'})
  result = run_tool('convert_dataset', '--dataset=folder', f'--data_dir={tmp_path / "other"}',
                    f'--output_dir={tmp_path / "records"}', '--split=val', '--val_fraction=0.5')
  assert result.returncode == 0, result.stderr[-2000:]
  result = run_tool('evaluate', f'--workdir={trained["workdir"]}',
                    f'--tfrecord_dir={tmp_path / "records"}', '--split=val')
  assert_bad_input(result, "other classes than the model in")


def test_evaluate_needs_a_trained_workdir(trained, tmp_path):
  result = run_tool('evaluate', f'--workdir={tmp_path}', f'--tfrecord_dir={trained["data"]}')
  assert result.returncode == 2 and 'no model.json' in result.stderr


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_the_rerun_resumes(trained):
  """SIGINT behaves like SIGTERM: the step finishes, a checkpoint is written, exit code 130, no
  traceback; the same command again (a relative workdir) resumes from it. (The child gets
  SIGINT's default disposition: a background shell ignores it.)"""
  import signal
  import subprocess
  import sys
  from tests.conftest import ROOT
  workdir = 'runs/interrupted'
  command = ['--gin_file=experiments/retrain/synthetic.gin', f'--workdir={workdir}',
             f'--tfrecord_dir={trained["data"]}', f'--genotype={trained["genotype"]}',
             '--gin_bindings=train_config.log_every = 1']
  child = subprocess.Popen(
      [sys.executable, '-m', 'tools.train', *command, '--num_steps=60'], cwd=trained['root'],
      text=True,
      env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3'), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  seen = []
  for line in child.stdout:
    seen.append(line)
    if line.startswith('[train] step 3/'):
      child.send_signal(signal.SIGINT)
      break
  out, err = child.communicate(timeout=300)
  assert child.returncode == 130, ''.join(seen) + out + err[-3000:]
  assert 'SIGINT at step' in out and 'Traceback' not in err and 'KeyboardInterrupt' not in err
  step = int(out.split('SIGINT at step ')[1].split(':')[0])
  assert f'checkpoint {workdir}/checkpoints/ckpt-{step} written' in out, out
  assert step >= 3 and os.path.exists(f'{workdir}/checkpoints/ckpt-{step}.index')
  result = run_tool('train', *command, f'--num_steps={step + 1}')
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert f'resumed from {workdir}/checkpoints/ckpt-{step} at step {step}' in result.stdout
  assert 'unreadable' not in result.stdout + result.stderr
