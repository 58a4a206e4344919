"""The quickstart pipeline end to end on its smallest configuration, run as the README runs it
(from a clone's root, `--workdir=runs/quickstart`): every artefact it lists exists and is valid,
the output is free of TensorFlow's start-up noise, a rerun skips every stage.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import example
from official.autodeeplab.search.genotype import Genotype
from tests.conftest import run_tool
from tests.conftest import user_dir

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('pipeline')]


WORKDIR = 'runs/quickstart'


@pytest.fixture(scope='session')
def quickstart(tmp_path_factory):
  root = user_dir(tmp_path_factory.mktemp('clone'))
  result = run_tool('pipeline', f'--workdir={WORKDIR}', '--fast', cwd=root)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return tmp_path_factory.getbasetemp() / os.path.basename(root) / WORKDIR, result


def test_every_artefact_exists_and_is_valid(quickstart):
  work, result = quickstart
  genotype = Genotype.from_json(work / 'search' / 'genotype.json')  # validates
  assert genotype.num_layers == 3 and genotype.num_blocks == 5
  assert (work / 'search' / 'arch.npz').exists() and os.listdir(work / 'search' / 'tensorboard')
  assert (work / 'search' / 'architecture.png').stat().st_size > 0
  with open(work / 'train' / 'eval.json') as f:
    report = json.load(f)
  assert 0 <= report['miou'] <= 1 and report['num_images'] == 8
  assert len(os.listdir(work / 'predictions')) == 3 * 8
  served = tf.saved_model.load(str(work / 'serving' / 'autodeeplab' / '1'))
  image = np.random.default_rng(0).integers(0, 256, [40, 50, 3], dtype=np.uint8)
  out = served.signatures['serving_default'](image_bytes=tf.constant([example.png_bytes(image)]))
  assert out['semantic'].shape == (1, 40, 50)
  assert (work / 'predicted' / 'new_image_overlay.png').exists()
  assert 'tensorboard --logdir' in result.stdout
  from tools import pipeline  # defines its flags: imported where used, as test_image_formats
  # --fast trains 6 steps: whether that learned anything varies; the headline must say which
  failure = pipeline.learned_nothing(report, str(work / 'data'),
                                     pipeline._majority_class_miou(str(work / 'data')))
  if failure:
    assert '[done, but the model learned (almost) nothing: see the end]' in result.stdout
    assert f'WARNING: the model learned (almost) nothing: {failure}' in result.stdout
  else:
    assert '[done] in' in result.stdout and 'WARNING: the model learned' not in result.stdout


def test_describe_decodes_the_search_workdir(quickstart, tmp_path):
  work, _ = quickstart
  result = run_tool('describe', f'--workdir={WORKDIR}/search', '--json',
                    f'--history={tmp_path / "history.png"}', cwd=work.parent.parent)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout)
  assert report['genotype'] == Genotype.from_json(work / 'search' / 'genotype.json').to_dict()
  assert report['step'] == 4
  assert report['exports'] == 1 and (tmp_path / 'history.png').stat().st_size > 0


def test_output_is_free_of_start_up_noise(quickstart):
  _, result = quickstart
  for noise in ('cuInit', 'cuda drivers', 'absl::InitializeLog', 'oneDNN custom', 'deprecat'):
    assert noise not in result.stdout + result.stderr


def test_rerun_skips_every_completed_stage(quickstart):
  work, _ = quickstart
  result = run_tool('pipeline', f'--workdir={WORKDIR}', '--fast', cwd=work.parent.parent)
  assert result.returncode == 0, result.stderr[-2000:]
  for stage in ('convert train', 'convert val', 'search', 'export', 'predict'):
    assert f'[{stage}] ' in result.stdout and 'skipped' in result.stdout
  assert 'nothing to do' in result.stdout and 'up to date: skipped' in result.stdout
