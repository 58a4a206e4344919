"""One writer per workdir: a second process is refused at once, naming the holder; the kernel
releases the lock when the holder dies (kill -9 included); workers lock their own directories."""
import json
import os
import signal
import subprocess
import sys
import time

from official.autodeeplab.utils import workdir_lock
from tests.conftest import ROOT, assert_bad_input, run_tool

_HOLD = ('import sys, time; from official.autodeeplab.utils import workdir_lock; '
         'workdir_lock.lock(sys.argv[1]); print("locked", flush=True); time.sleep(600)')


def hold(workdir):
  """A process that takes the workdir's lock and keeps it; returns once the lock is held."""
  holder = subprocess.Popen([sys.executable, '-c', _HOLD, str(workdir), 'the-holder'], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                            text=True)
  assert holder.stdout.readline().strip() == 'locked'
  return holder


def test_a_second_writer_is_refused_at_once_and_kill_9_frees_the_lock(tmp_path):
  holder = hold(tmp_path)
  try:
    start = time.perf_counter()
    result = run_tool('train', f'--workdir={tmp_path}', '--tfrecord_dir=/nonexistent')
    elapsed = time.perf_counter() - start
    assert_bad_input(result, f'{tmp_path}: in use by another process (pid {holder.pid}: ')
    assert 'the-holder' in result.stderr
    assert not any(name.startswith('checkpoints') for name in os.listdir(tmp_path))
    # Refused before TensorFlow was imported: a process that imports it takes several seconds.
    probe = subprocess.run([sys.executable, '-c', 'import time, sys; t = time.perf_counter(); '
                            'import tensorflow; print(time.perf_counter() - t)'],
                           capture_output=True, text=True, check=True)
    assert elapsed < float(probe.stdout.split()[-1]) + 3.0
    assert_bad_input(run_tool('search', f'--workdir={tmp_path}', '--num_steps=1'),
                     'in use by another process')
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The kernel released it: the next process takes it (and records itself).
  again = hold(tmp_path)
  with open(tmp_path / workdir_lock.LOCK_FILE) as f:
    assert json.load(f)['pid'] == again.pid
  again.send_signal(signal.SIGKILL)
  again.wait()


def test_workers_lock_their_own_directories():
  config = lambda task, index, chief=False: {'TF_CONFIG': json.dumps({
      'cluster': {'worker': ['a:1', 'b:2'], **({'chief': ['c:3']} if chief else {})},
      'task': {'type': task, 'index': index}})}
  assert workdir_lock.lock_dir('w', 'multi_worker', config('worker', 0)) == 'w'
  assert workdir_lock.lock_dir('w', 'multi_worker', config('worker', 1)) == os.path.join(
      'w', 'workers', 'worker-1')
  assert workdir_lock.lock_dir('w', 'multi_worker', config('worker', 0, chief=True)) == (
      os.path.join('w', 'workers', 'worker-0'))
  assert workdir_lock.lock_dir('w', 'multi_worker', config('chief', 0, chief=True)) == 'w'
  assert workdir_lock.lock_dir('w', 'mirrored', config('worker', 1)) == 'w'
