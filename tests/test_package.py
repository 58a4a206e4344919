"""The project as an installed package: the wheel built offline from pyproject.toml, installed with
`--no-deps` beside the venv's packages (and beside a Model Garden-like `official` package), its
console command run outside the checkout, importing nothing from it."""
import json
import os
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group('package')

COMMANDS = ('convert', 'search', 'describe', 'train', 'evaluate', 'export', 'predict',
            'pipeline', 'baseline', 'latency')


def _pip(*args, cwd):
  result = subprocess.run([sys.executable, '-m', 'pip', '--disable-pip-version-check', *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


@pytest.fixture(scope='session')
def wheel(tmp_path_factory):
  """The wheel, built from a copy of the tracked files (the build leaves nothing in the
  checkout)."""
  root = tmp_path_factory.mktemp('package')
  source = root / 'source'
  tracked = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split('\0')
  for name in filter(None, tracked):
    if os.path.isfile(os.path.join(ROOT, name)):
      os.makedirs(source / os.path.dirname(name), exist_ok=True)
      with open(os.path.join(ROOT, name), 'rb') as f:
        (source / name).write_bytes(f.read())
  _pip('wheel', '--no-build-isolation', '--no-deps', '--no-index', '-w', str(root / 'dist'),
       str(source), cwd=root)
  wheels = os.listdir(root / 'dist')
  assert len(wheels) == 1 and wheels[0].startswith('autodeeplab-'), wheels
  return root, root / 'dist' / wheels[0]


def test_the_wheel_holds_the_library_and_no_top_level_tools(wheel):
  import zipfile
  _, path = wheel
  names = zipfile.ZipFile(path).namelist()
  tops = {name.split('/')[0] for name in names if '.dist-info' not in name}
  assert tops == {'official', 'autodeeplab_tools'}
  assert 'official/__init__.py' not in names  # a namespace: Model Garden's `official` stays
  assert 'official/autodeeplab/serving/formats.py' in names
  entry_points = next(n for n in names if n.endswith('entry_points.txt'))
  text = zipfile.ZipFile(path).read(entry_points).decode()
  for command in COMMANDS:
    assert f'autodeeplab-{command} = autodeeplab_tools.' in text


def test_installed_beside_a_model_garden_official_runs_a_console_command(wheel):
  root, path = wheel
  prefix = root / 'prefix'
  site = sysconfig.get_path('purelib', vars={'base': str(prefix), 'platbase': str(prefix)})
  garden = os.path.join(site, 'official', 'nlp')  # tf-models-official's layout: a regular package
  os.makedirs(garden)
  for directory in (os.path.dirname(garden), garden):
    with open(os.path.join(directory, '__init__.py'), 'w') as f:
      f.write('')
  _pip('install', '--no-deps', '--no-index', '--prefix', str(prefix), str(path), cwd=root)
  outside = root / 'elsewhere'
  outside.mkdir()
  env = {**os.environ, 'PYTHONPATH': site, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  result = subprocess.run([str(prefix / 'bin' / 'autodeeplab-describe'), '--genotype=paper',
                           '--json'], cwd=outside, env=env, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report['genotype']['path'] == [0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1]  # the paper's
  probe = subprocess.run(
      [sys.executable, '-c', 'import official.nlp, official.autodeeplab, autodeeplab_tools; '
       'print(official.autodeeplab.__file__); print(autodeeplab_tools.__file__)'],
      cwd=outside, env=env, capture_output=True, text=True, timeout=120)
  assert probe.returncode == 0, probe.stderr[-2000:]
  assert all(line.startswith(site) for line in probe.stdout.split()), probe.stdout
  assert not os.path.exists(os.path.join(ROOT, 'build'))
