"""The search binary: bad input, corrupt shards, the paper's protocol in one gin file. (Its
end-to-end run on TFRecords is in test_pipeline, under a multi-worker strategy in
test_search_workers.)"""
import json
import os

import pytest

from tests.conftest import assert_bad_input

pytestmark = pytest.mark.xdist_group('search_tool')  # the bad-input batch runs once


# A bad flag -> what its one error line says.
BAD_FLAGS = {
    '--gin_file=nope.gin': '--gin_file=nope.gin: no such file',
    '--gin_bindings=build_supernet.no_such_arg = 1': '--gin_bindings (binding 1): ',
    '--crop_size=0': '--crop_size=0: must be positive',
    '--strategy=gpu_farm': '--strategy=gpu_farm: expected one of',
    '--gin_bindings=search_config.arch_lr_min = 3': 'search_config.arch_lr_min: no such setting; '
                                                    'did you mean',
    '--gin_bindings=search_data.crop_size = "big"': "search_data.crop_size = 'big': expected",
    '--precision=float8': '--precision=float8: expected one of float32, bfloat16, float16',
    '--gin_bindings=runtime_options.precision = "half"':
        'runtime_options.precision=half: expected one of float32, bfloat16, float16',
}


@pytest.fixture(scope='session')
def bad_flag_results(tmp_path_factory):
  """Every BAD_FLAGS command line, in one process (`tests/cli_batch.py`)."""
  from tests.cli_batch import run_batch
  root = tmp_path_factory.mktemp('search_bad')
  commands = [[f'--workdir={root / str(i)}', '--num_steps=1', flag]
              for i, flag in enumerate(BAD_FLAGS)]
  return dict(zip(BAD_FLAGS, run_batch('search', commands)))


@pytest.mark.parametrize('flag', BAD_FLAGS)
def test_search_binary_bad_input(bad_flag_results, flag):
  message = BAD_FLAGS[flag]
  result = bad_flag_results[flag]
  assert_bad_input(result, message)
  lines = [l for l in result.stderr.strip().splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]


def test_gin_files_that_do_not_parse_are_named_with_their_line(tool, tmp_path):
  import gin
  from official.autodeeplab.training import configs  # noqa: F401 (registers the configurables)
  from official.autodeeplab import launch
  cases = {
      'unclosed.gin': ('search_config.num_layers = 4\nsearch_config.arch_lr = (3,\n',
                       'unclosed.gin, line 3: EOF in multi-line statement'),
      'syntax.gin': ('search_config.num_layers = 4\nsearch_config.arch_lr = 1e-3 1\n',
                     'syntax.gin, line 2: Expected newline'),
      'include.gin': ('include "missing.gin"\n', 'include.gin, line 1: Unable to open file: '
                      'missing.gin'),
      'unknown.gin': ('search_config.num_layers = 4\nsearch_confg.arch_lr = 1\n',
                      "unknown.gin, line 2: No configurable matching 'search_confg'"),
  }
  for name, (text, message) in cases.items():
    (tmp_path / name).write_text(text)
    with pytest.raises(launch.UserInputError) as raised:
      launch.parse_gin([str(tmp_path / name)], [])
    gin.clear_config()
    assert message in str(raised.value) and '\n' not in str(raised.value), str(raised.value)
  result = tool('search', f'--workdir={tmp_path / "run"}', f'--gin_file={tmp_path / "syntax.gin"}')
  assert_bad_input(result, f'--gin_file={tmp_path / "syntax.gin"}, line 2: Expected newline')


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


def test_cityscapes_gin_holds_the_papers_whole_protocol():
  """python -m tools.search --gin_file=experiments/search/cityscapes.gin --tfrecord_dir=...
  --workdir=... runs the paper's search with no other flag (sec. 5.1)."""
  import gin
  from official.autodeeplab.training import configs
  from tests.conftest import ROOT
  gin.clear_config()
  try:
    gin.parse_config_file(os.path.join(ROOT, 'experiments/search/cityscapes.gin'))
    config, data = configs.search_config(), configs.search_data()
    supernet = gin.get_bindings('build_supernet')
  finally:
    gin.clear_config()
  assert (data.crop_size, data.batch_size, data.min_scale, data.max_scale) == (321, 2, 1.0, 1.0)
  steps_per_epoch = 1488 // 2  # 2975 train_fine images, the larger half
  assert config.total_steps == 40 * steps_per_epoch
  assert config.arch_start_step == 20 * steps_per_epoch  # architecture steps from epoch 20
  assert (config.weight_lr, config.weight_lr_min, config.weight_momentum) == (0.025, 0.001, 0.9)
  assert (config.weight_decay, config.arch_lr, config.arch_weight_decay) == (3e-4, 3e-3, 1e-3)
  assert config.arch_only_gradients  # a long run: the arch step's own, leaner graph
  assert supernet == {'num_layers': 12, 'num_blocks': 5, 'filter_multiplier': 8,
                      'recompute': True}


@pytest.mark.slow
def test_a_relative_workdir_resumes_warns_when_unsearched_and_describes(tool, tmp_path):
  """As the README writes it (from a clone's root, `--workdir=runs/search`): a run that ends
  before its architecture steps says loudly that its genotype is not searched; the same command
  with more steps resumes from the relative workdir's checkpoint; describe reads it."""
  from tests.conftest import user_dir
  root = user_dir(tmp_path)
  args = ['--workdir=runs/search', '--gin_file=experiments/search/synthetic_quickstart.gin',
          '--gin_bindings=build_supernet.num_layers = 2',
          '--gin_bindings=build_supernet.filter_multiplier = 2',
          '--gin_bindings=search_config.arch_start_step = 3', '--crop_size=33',
          '--num_examples=8', '--image_size=40', '--checkpoint_every=1', '--export_every=1']
  first = tool('search', *args, '--num_steps=2', cwd=root)
  assert first.returncode == 0, first.stderr[-3000:]
  assert first.stdout.count('WARNING') == 2, first.stdout  # at the start and with the genotype
  assert 'NOT a searched architecture' in first.stdout
  second = tool('search', *args, '--num_steps=3', cwd=root)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'resumed from runs/search/checkpoints/ckpt-2 at step 2' in second.stdout
  assert 'WARNING' not in second.stdout and 'unreadable' not in second.stdout + second.stderr
  described = tool('describe', '--workdir=runs/search', '--history=history.png', '--json',
                   cwd=root)
  assert described.returncode == 0, described.stderr[-3000:]
  assert json.loads(described.stdout)['step'] == 3 and (tmp_path / 'history.png').exists()
