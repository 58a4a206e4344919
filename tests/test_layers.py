"""The library's packages import downwards only, and docs/guide.md's map names every module.

Layers, bottom first (a package may import its own modules and any layer below it):
  errors.py, files.py   what every layer reports and how files are written
  search/               the search space as data: op table, genotype, decoding, costs
  utils/                process and picture helpers that know no domain (runtime, plots' PNGs)
  data/                 datasets, converters, records, tf.data
  modeling/             Keras layers and models
  training/             tasks, the loop, checkpoints, evaluation, the search's outputs
  serving/              exports
  launch.py             a binary's process set-up, over everything
"""
import ast
import glob
import os
import re

import pytest

from tests.conftest import ROOT

LIBRARY = os.path.join(ROOT, 'official', 'autodeeplab')
LAYERS = ['errors', 'files', 'search', 'utils', 'data', 'modeling', 'training', 'serving',
          'launch']
RANK = {'errors': 0, 'files': 0, 'search': 1, 'utils': 2, 'data': 3, 'modeling': 4,
        'training': 5, 'serving': 6, 'launch': 7}


def _modules():
  return sorted(os.path.relpath(p, LIBRARY) for p in glob.glob(
      os.path.join(LIBRARY, '**', '*.py'), recursive=True))


def _layer(relative: str) -> str:
  first = relative.split('/')[0]
  return first[:-3] if first.endswith('.py') else first


def _imported_layers(path: str):
  """(layer, line) of every `official.autodeeplab` import in the file, function bodies too."""
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
        'official.autodeeplab'):
      parts = node.module.split('.')
      names = [parts[2]] if len(parts) > 2 else [alias.name for alias in node.names]
      for name in names:
        yield name, node.lineno
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.startswith('official.autodeeplab.'):
          yield alias.name.split('.')[2], node.lineno


@pytest.mark.parametrize('module', [m for m in _modules() if not m.endswith('__init__.py')])
def test_imports_go_downwards_only(module):
  own = _layer(module)
  assert own in RANK, f'{module}: a package or top-level module with no layer in this test'
  for layer, line in _imported_layers(os.path.join(LIBRARY, module)):
    if layer == own:
      continue
    assert layer in RANK, f'{module}:{line} imports official.autodeeplab.{layer}: unknown layer'
    assert RANK[layer] <= RANK[own], (f'{module}:{line}: {own} imports {layer}, a layer above it '
                                      f'(order: {" < ".join(LAYERS)})')


def test_the_guide_maps_every_module():
  """docs/guide.md's layout lists every library module, binary and benchmark by its path."""
  with open(os.path.join(ROOT, 'docs', 'guide.md')) as f:
    guide = f.read()
  layout = guide[guide.index('## Layout'):guide.index('\n## ', guide.index('## Layout') + 5)]
  named = set(re.findall(r'[\w/]+\.py', layout))
  wanted = {m for m in _modules() if not m.endswith('__init__.py')}
  wanted |= {os.path.relpath(p, ROOT) for pattern in ('tools/*.py', 'benchmarks/*.py')
             for p in glob.glob(os.path.join(ROOT, pattern)) if not p.endswith('__init__.py')}
  missing = sorted(m for m in wanted if m not in named and os.path.basename(m) not in named)
  assert not missing, f'docs/guide.md "## Layout" does not name: {missing}'
