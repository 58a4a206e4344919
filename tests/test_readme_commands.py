"""Every command in README.md's code blocks, run as written, in order, from a clone's root.

A suite that passed only absolute temporary paths once hid a quickstart that failed on every
fresh clone; this test reads README.md itself, so a command that stops working, or a README that
drifts from the binaries, fails here. What is substituted, and only that:
* the datasets under `/data/...` are small fake trees in their real on-disk formats
  (`tests/data_trees.py`), `my_data` a folder dataset, `photos/` a few images;
* each binary gets small sizes inserted right after its name (`SMALL`), which the README's own
  flags, coming later on the line, override where they set the same flag;
* the LiteRT example's 513x513 input becomes 65x65 (file name included), and `--genotype=paper`
  (12 layers) a 4-layer genotype of the same cell.
What is left out, and why, is `SKIPPED`: the README's own two `make` commands (CI runs them on
the clone itself), servers that run until stopped, and data that cannot be downloaded here.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from official.autodeeplab.data.converters import folder
from tests import data_trees
from tests.conftest import ROOT
from tests.conftest import user_dir

pytestmark = pytest.mark.slow

# A command that starts with one of these is not run, for the reason given.
SKIPPED = {
    'make quickstart': 'CI runs it on the clean clone before the tests (.ci/run)',
    'make test': 'it runs this very suite',
    'tensorboard': 'a server that runs until stopped (its logs are checked by the search and '
                   'train tests)',
    'docker run': 'no Docker engine on the test machines; the SavedModel it serves is loaded by '
                  'a fresh process and saved_model_cli in tests/test_export.py',
    'python -m tools.predict --server=': 'needs the TF Serving container above; the REST and '
                                         'gRPC clients are tested against a stand-in server in '
                                         'tests/test_export.py',
    'python -m tools.convert_dataset --dataset=tfds': 'TFDS datasets cannot be downloaded here; '
                                                      'the TFDS reader is tested with TFDS\'s own '
                                                      'mocking in tests/test_convert_dataset.py',
}

# Inserted after `python -m tools.X`: sizes a 2-core CI machine runs in seconds.
SMALL = {
    'search': ['--num_steps=2', '--crop_size=33', '--checkpoint_every=1', '--export_every=1',
               '--gin_bindings=build_supernet.num_layers = 2',
               '--gin_bindings=build_supernet.filter_multiplier = 2',
               '--gin_bindings=build_supernet.recompute = False',
               '--gin_bindings=search_config.arch_only_gradients = False'],
    'train': ['--num_steps=2', '--crop_size=33', '--batch_size=2', '--filter_multiplier=2',
              '--gin_bindings=train_config.eval_every = 2'],
    'latency': ['--filter_multiplier=2', '--warmup=1', '--repeats=2', '--rounds=1'],
}
LITERAL = {'513,513': '65,65', '513x513': '65x65', '--genotype=paper': '--genotype=small.json'}


def readme_commands() -> list[str]:
  """The shell commands of README.md's ```bash blocks: continuation lines joined, comments and
  the `[ ]` around optional flags dropped (the flags are kept: they run too)."""
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  commands = []
  for block in re.findall(r'```bash\n(.*?)```', text, re.S):
    for line in block.replace('\\\n', ' ').splitlines():
      words = shlex.split(line, comments=True)
      if words:
        commands.append(re.sub(r'\s+#\s.*$', '', line).replace('[', '').replace(']', '').strip())
  return commands


def _fake_data(root: str) -> None:
  """What the README's commands read, made small in the real formats."""
  cities = ('aachen', 'bonn', 'koeln')
  data_trees.cityscapes(os.path.join(root, 'data/cityscapes'), 'train', cities, per_city=4)
  data_trees.cityscapes(os.path.join(root, 'data/cityscapes'), 'val', cities[:1], per_city=3)
  data_trees.cityscapes(os.path.join(root, 'data/cityscapes'), 'test', cities[1:], per_city=1)
  data_trees.voc(os.path.join(root, 'data/VOCdevkit/VOC2012'),
                 os.path.join(root, 'data/benchmark_RELEASE/dataset'))
  data_trees.ade20k(os.path.join(root, 'data/ADEChallengeData2016'), 'validation')
  data_trees.folder(os.path.join(root, 'my_data'), 'flat', count=16, size=(48, 64))
  from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
  Genotype(cell=PAPER_GENOTYPE.cell, path=(0, 0, 1, 1)).to_json(os.path.join(root, 'small.json'))
  os.makedirs(os.path.join(root, 'photos'))
  rng = np.random.default_rng(0)
  for name, size in (('street.png', (40, 56)), ('shop.jpg', (33, 47))):
    Image.fromarray(rng.integers(0, 256, [*size, 3], dtype=np.uint8)).save(
        os.path.join(root, 'photos', name))


def _as_run_here(command: str, root: str) -> str:
  command = command.replace('/data/', f'{root}/data/')
  for old, new in LITERAL.items():
    command = command.replace(old, new)
  def small(match):
    return match.group(0) + ''.join(' ' + shlex.quote(flag) for flag in SMALL.get(match.group(1),
                                                                                   ()))
  command = re.sub(r'python -m tools\.(\w+)', small, command)
  if shutil.which('zip') is None:  # the benchmark server's archive; the PNGs are still checked
    command = re.sub(r' && \(cd [^)]*zip[^)]*\)', '', command)
  return command


def test_every_readme_command_runs_as_written(tmp_path):
  commands = readme_commands()
  assert any('tools.search' in c for c in commands) and len(commands) > 15, commands
  root = user_dir(tmp_path / 'clone')
  _fake_data(root)
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3',
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
  ran, skipped = [], []
  for command in commands:
    reason = next((why for start, why in SKIPPED.items() if command.startswith(start)), None)
    if reason:
      skipped.append(command)
      continue
    result = subprocess.run(['bash', '-c', _as_run_here(command, root)], cwd=root, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (f'README command failed (exit {result.returncode}):\n'
                                    f'{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    ran.append(command)
  assert len(skipped) == 6 and len(ran) == len(commands) - 6, skipped
  # What the commands were to produce, where the README says it lands.
  assert os.path.exists(os.path.join(root, 'runs/search_cityscapes/genotype.json'))
  assert os.path.exists(os.path.join(root, 'now.png'))
  assert os.path.exists(os.path.join(root, 'runs/cityscapes_s/eval.json'))
  assert len(os.listdir(os.path.join(root, 'runs/cs_val_png'))) == 3 * 3
  assert len([f for f in os.listdir(os.path.join(root, 'runs/submission'))
              if f.endswith('.png')]) == 2  # one mask per test image
  for exported in ('tflite/autodeeplab/autodeeplab_65x65_int8.tflite',
                   'onnx/autodeeplab/autodeeplab.onnx', 'keras/autodeeplab/autodeeplab.keras'):
    assert os.path.exists(os.path.join(root, 'runs', exported)), exported
  masks = os.listdir(os.path.join(root, 'masks'))
  assert any(f.startswith('shop') for f in masks) and any(f.startswith('street') for f in masks)
  # The pipeline on a user's folder: the export's labels.json has the folder's class names and
  # palette, and a few of its val images are predicted through the export.
  labels = json.loads(open(os.path.join(
      root, 'runs/mine/serving/autodeeplab/1/assets.extra/labels.json')).read())
  assert labels['class_names'] == data_trees.FOLDER_CLASSES
  assert labels['palette'] == data_trees.FOLDER_PALETTE
  with open(os.path.join(root, 'runs/mine/train/model.json')) as f:
    assert json.load(f)['class_names'] == data_trees.FOLDER_CLASSES
  val = folder.list_splits(os.path.join(root, 'my_data'))['val'][:3]
  assert len(os.listdir(os.path.join(root, 'runs/mine/predicted'))) == 3 * len(val)
