"""tools/describe as a user runs it: counts, genotype text and bad input."""
import json


def test_space_json(tool):
  result = tool('describe', '--space', '--json')
  assert result.returncode == 0, result.stderr
  counts = json.loads(result.stdout)
  assert counts['num_paths_first_stride4'] == 28657
  assert counts['num_paths_first_stride4_or_8'] == 75025
  assert f'{counts["num_cells"]:.1e}' == '5.6e+14'


def test_genotype_text(tool):
  result = tool('describe', '--genotype=paper', '--space', '--num_layers=4')
  assert result.returncode == 0, result.stderr
  assert 'block0 = atrous_5x5(H^{l-2}) + separable_3x3_2(H^{l-1})' in result.stdout
  assert '4 4 4 8 16 8 16 16 32 32 16 8' in result.stdout
  assert 'paths:  19 ' not in result.stdout and 'L=4' in result.stdout


def test_architecture_plot(tool, tmp_path):
  result = tool('describe', '--genotype=paper', f'--plot={tmp_path / "arch.png"}', '--json')
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout)['plot'] == str(tmp_path / 'arch.png')
  from PIL import Image
  with Image.open(tmp_path / 'arch.png') as image:
    assert image.format == 'PNG' and image.width > 600
  assert [p.name for p in tmp_path.iterdir()] == ['arch.png']  # no temporary left


def test_bad_genotype_is_one_line_exit_2(tool, tmp_path):
  path = tmp_path / 'g.json'
  path.write_text('{"cell": [[[0, "skip"], [0, "skip"]]], "path": [0, 3]}')
  result = tool('describe', f'--genotype={path}')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      f'error: {path}: path[1]: jumps from level 0 to 3 (at most one level per layer)']
  assert 'Traceback' not in result.stderr


def test_model_size_json(tool):
  result = tool('describe', '--genotype=paper', '--model_size=S', '--num_classes=19',
                '--image_size=1025,2049', '--json')
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads(result.stdout)
  assert round(report['params'] / 1e6, 2) == 10.15
  assert abs(report['multiply_adds_tf_profiler'] / 333.25e9 - 1) < 0.02
  assert set(report['breakdown']['multiply_adds']) == {'stem', 'cells', 'aspp', 'decoder'}
  assert sum(report['breakdown']['params'].values()) == report['params']


def test_model_size_bad_input(tool):
  for args, message in (
      (['--model_size=XL'], '--model_size=XL: expected one of S, M, L'),
      (['--model_size=S', '--filter_multiplier=-1'], '--filter_multiplier=-1: must be'),
      (['--model_size=S', '--image_size=16,16'], '--image_size=16,16: height and width must'),
      (['--model_size=S', '--image_size=1024'], '--image_size=1024: expected HEIGHT,WIDTH'),
  ):
    result = tool('describe', '--genotype=paper', *args)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(
        f'error: {message}'), result.stderr[-1000:]


def test_history_figure_of_several_exports(tool, tmp_path):
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
        'transition_entropy': 1.0, 'miou_trainB': None if step == 10 else 0.5})
  from official.autodeeplab.training import plots
  path = plots.plot_history(arch_history.read(str(tmp_path)), str(tmp_path / 'h.png'))
  from PIL import Image
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.height > 300
  result = tool('describe', '--genotype=paper', f'--history={tmp_path / "x.png"}')
  assert result.returncode == 2 and '--history needs --workdir' in result.stderr
