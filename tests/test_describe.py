"""tools/describe as a user runs it: counts, genotype text and bad input. Every command line
runs in one process (`tests/cli_batch.py`): one start-up for all of them."""
import json

import pytest

from tests.cli_batch import run_batch

pytestmark = pytest.mark.xdist_group('describe')

BAD_GENOTYPE = '{"cell": [[[0, "skip"], [0, "skip"]]], "path": [0, 3]}'
MODEL_SIZE_BAD = {
    'XL': (['--model_size=XL'], '--model_size=XL: expected one of S, M, L'),
    'F': (['--model_size=S', '--filter_multiplier=-1'], '--filter_multiplier=-1: must be'),
    'tiny': (['--model_size=S', '--image_size=16,16'], '--image_size=16,16: height and width must'),
    'one': (['--model_size=S', '--image_size=1024'], '--image_size=1024: expected HEIGHT,WIDTH'),
}


@pytest.fixture(scope='session')
def described(tmp_path_factory):
  """{case: CompletedProcess} of every describe command line below, run in one process."""
  root = tmp_path_factory.mktemp('describe')
  (root / 'g.json').write_text(BAD_GENOTYPE)
  cases = {
      'space': ['--space', '--json'],
      'genotype': ['--genotype=paper', '--space', '--num_layers=4'],
      'plot': ['--genotype=paper', f'--plot={root / "plot" / "arch.png"}', '--json'],
      'bad_genotype': [f'--genotype={root / "g.json"}'],
      # (The paper's counts at 1025x2049 are test_complexity's; here the report at a small size.)
      'model_size': ['--genotype=paper', '--model_size=S', '--num_classes=19',
                     '--image_size=129,257', '--json'],
      'history_without_workdir': ['--genotype=paper', f'--history={root / "x.png"}'],
      **{f'bad_{name}': ['--genotype=paper', *args] for name, (args, _) in MODEL_SIZE_BAD.items()},
  }
  return root, dict(zip(cases, run_batch('describe', list(cases.values()))))


def test_space_json(described):
  result = described[1]['space']
  assert result.returncode == 0, result.stderr
  counts = json.loads(result.stdout)
  assert counts['num_paths_first_stride4'] == 28657
  assert counts['num_paths_first_stride4_or_8'] == 75025
  assert f'{counts["num_cells"]:.1e}' == '5.6e+14'


def test_genotype_text(described):
  result = described[1]['genotype']
  assert result.returncode == 0, result.stderr
  assert 'block0 = atrous_5x5(H^{l-2}) + separable_3x3_2(H^{l-1})' in result.stdout
  assert '4 4 4 8 16 8 16 16 32 32 16 8' in result.stdout
  assert 'paths:  19 ' not in result.stdout and 'L=4' in result.stdout


def test_architecture_plot(described):
  root, results = described
  result = results['plot']
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout)['plot'] == str(root / 'plot' / 'arch.png')
  from PIL import Image
  with Image.open(root / 'plot' / 'arch.png') as image:
    assert image.format == 'PNG' and image.width > 600
  assert [p.name for p in (root / 'plot').iterdir()] == ['arch.png']  # no temporary left


def test_bad_genotype_is_one_line_exit_2(described):
  root, results = described
  path, result = root / 'g.json', results['bad_genotype']
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'error: {path}: path[1]: jumps from level 0 to 3 (at most one level per layer)']
  assert 'Traceback' not in result.stderr


def test_model_size_json(described):
  result = described[1]['model_size']
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout)
  assert round(report['params'] / 1e6, 2) == 10.15 and report['image_size'] == [129, 257]
  assert 0 < report['multiply_adds'] < report['multiply_adds_tf_profiler'] * 1.1
  assert set(report['breakdown']['multiply_adds']) == {'stem', 'cells', 'aspp', 'decoder'}
  assert sum(report['breakdown']['params'].values()) == report['params']


@pytest.mark.parametrize('name', MODEL_SIZE_BAD)
def test_model_size_bad_input(described, name):
  message = MODEL_SIZE_BAD[name][1]
  result = described[1][f'bad_{name}']
  assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        f'error: {message}'), result.stderr[-1000:]


def test_history_figure_of_several_exports(described, tmp_path):
  """plot_history draws arch_history.jsonl records (here: three exports, the path changing once;
  the tool's --history on a real search: test_pipeline); --history needs a workdir."""
  import dataclasses
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.training import arch_history
  moved = dataclasses.replace(PAPER_GENOTYPE, path=(0,) + PAPER_GENOTYPE.path[1:4] +
                              PAPER_GENOTYPE.path[4:])
  changed = dataclasses.replace(PAPER_GENOTYPE, path=(1,) + PAPER_GENOTYPE.path[1:])
  for step, genotype in ((10, moved), (20, changed), (30, changed)):
    arch_history.append(str(tmp_path), {
        'step': step, 'epoch': step / 10, 'genotype': genotype.to_dict(), 'alpha_entropy': 2.0,
        'transition_entropy': 1.0, 'miou_trainB': None if step == 10 else 0.5,
        **({'dominant_eigenvalue': step / 10} if step > 10 else {})})  # track_sharpness
  from official.autodeeplab.training import plots
  records = arch_history.read(str(tmp_path))
  assert arch_history.sharpness_curve(records) == [{'step': 20, 'value': 2.0},
                                                   {'step': 30, 'value': 3.0}]
  path = plots.plot_history(records, str(tmp_path / 'h.png'))
  from PIL import Image
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.height > 300
  result = described[1]['history_without_workdir']
  assert result.returncode == 2 and '--history needs --workdir' in result.stderr
