"""Checkpoint directories spelt as users type them resolve the same checkpoints.

`tf.train.get_checkpoint_state` prefixes the state file's relative entries with the directory it
was given; joining the directory again broke every relative workdir (the quickstart's
`runs/quickstart` included) while tests with absolute temporary paths stayed green. Here every
spelling (relative, absolute, `./`, `..`, a trailing slash, a symbolic link, `~`, spaces) reads
the same checkpoints, and the repair of an unreadable one acts only on files that exist.
"""
import glob
import os

import pytest
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.training import checkpoints
from official.autodeeplab.utils import workdir_lock


def _write_checkpoints(directory, steps=(1, 2, 3)):
  """A CheckpointManager's directory (relative entries in its state file), tiny checkpoints."""
  variable = tf.Variable(0.0)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(directory), 5)
  for step in steps:
    variable.assign(float(step))
    manager.save(checkpoint_number=step)


SPELLINGS = {
    'relative': lambda root: 'runs/my run/checkpoints',
    'dot-relative': lambda root: './runs/my run/checkpoints',
    'parent': lambda root: '../here/runs/my run/checkpoints',
    'trailing slash': lambda root: 'runs/my run/checkpoints/',
    'absolute': lambda root: str(root / 'here' / 'runs' / 'my run' / 'checkpoints'),
    'symlink': lambda root: 'link/checkpoints',
    'home': lambda root: '~/runs/my run/checkpoints',
}


@pytest.fixture
def layout(tmp_path, monkeypatch):
  """cwd = tmp/here with runs/'my run'/checkpoints written through its relative name, a link
  to the run, and HOME = tmp/here (for `~`)."""
  here = tmp_path / 'here'
  here.mkdir()
  monkeypatch.chdir(here)
  monkeypatch.setenv('HOME', str(here))
  _write_checkpoints('runs/my run/checkpoints')
  os.symlink(here / 'runs' / 'my run', here / 'link')
  return tmp_path


@pytest.mark.parametrize('spelling', SPELLINGS)
def test_every_spelling_lists_and_reads_the_same_checkpoints(layout, spelling):
  directory = SPELLINGS[spelling](layout)
  paths = checkpoints.listed(directory)
  assert [os.path.basename(p) for p in paths] == ['ckpt-1', 'ckpt-2', 'ckpt-3']
  assert all(os.path.exists(os.path.expanduser(p) + '.index') for p in paths), paths
  latest = checkpoints.latest_readable(directory, log=pytest.fail)
  assert os.path.basename(latest) == 'ckpt-3'
  assert float(tf.train.load_checkpoint(os.path.expanduser(latest)).get_tensor(
      'v/.ATTRIBUTES/VARIABLE_VALUE')) == 3.0


@pytest.mark.parametrize('spelling', ['relative', 'trailing slash', 'symlink', 'home'])
def test_the_repair_moves_the_damaged_one_and_keeps_the_state_file_valid(layout, spelling):
  """The lock is taken through one spelling and the repair runs through another: the unreadable
  newest checkpoint goes to corrupt-ckpt-3/ beside it, the state file lists the rest by name (so
  it reads from any directory), and nothing lands under a doubled path."""
  here = layout / 'here'
  data, = glob.glob(str(here / 'runs' / 'my run' / 'checkpoints' / 'ckpt-3.data-*'))
  with open(data, 'r+b') as f:
    f.truncate(5)
  workdir_lock.lock(str(here / 'runs' / 'my run'))
  lines = []
  latest = checkpoints.latest_readable(SPELLINGS[spelling](layout), log=lines.append)
  assert os.path.basename(latest) == 'ckpt-2'
  assert 'moved aside to' in lines[0] and 'resuming from' in lines[-1], lines
  moved = here / 'runs' / 'my run' / 'checkpoints' / 'corrupt-ckpt-3'
  assert sorted(os.listdir(moved)) == sorted(os.path.basename(p) for p in glob.glob(
      str(moved / '*'))) and len(os.listdir(moved)) == 2
  assert not glob.glob(str(here / '**' / 'checkpoints' / 'runs'), recursive=True)
  state = (here / 'runs' / 'my run' / 'checkpoints' / 'checkpoint').read_text()
  assert 'model_checkpoint_path: "ckpt-2"' in state and '/' not in state, state
  os.chdir(layout)  # read from elsewhere, absolute
  assert checkpoints.listed(str(here / 'runs' / 'my run' / 'checkpoints'))[-1].endswith('ckpt-2')


def test_a_listed_checkpoint_without_files_is_not_moved_or_invented(layout):
  """A state file that names checkpoints whose files were deleted: said as such, no empty
  corrupt-ckpt-N/ folders made, and the error names the directory."""
  here = layout / 'here'
  for path in glob.glob(str(here / 'runs' / 'my run' / 'checkpoints' / 'ckpt-*')):
    os.remove(path)
  workdir_lock.lock('runs/my run')
  lines = []
  with pytest.raises(UserInputError, match=r'runs/my run/checkpoints: none of its 3 checkpoint'):
    checkpoints.latest_readable('runs/my run/checkpoints', log=lines.append)
  assert all('nothing moved aside' in line for line in lines) and len(lines) == 3, lines
  assert not glob.glob(str(here / 'runs' / 'my run' / 'checkpoints' / 'corrupt-*'))


def test_the_lock_is_the_same_whatever_the_spelling(layout):
  here = layout / 'here'
  workdir_lock.lock('runs/my run/')
  for spelling in ('runs/my run', './runs/my run', str(here / 'runs' / 'my run'), 'link',
                   '~/runs/my run'):
    assert workdir_lock.held(spelling), spelling
  assert not workdir_lock.held('runs')
