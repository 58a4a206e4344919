"""The search binary under MultiWorkerMirroredStrategy: two worker processes on localhost."""
import os

import pytest


def _free_ports(count):
  import socket
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_search_on_two_workers(tmp_path):
  """MultiWorkerMirroredStrategy: two processes on localhost (TF_CONFIG), one replica each, run the
  search binary to completion; the chief writes the workdir, the other worker only its own
  checkpoints; the result has the shape of a one-worker search."""
  import json
  import subprocess
  import sys
  from official.autodeeplab.search.genotype import Genotype
  from tests.conftest import ROOT
  cluster = {'worker': [f'127.0.0.1:{port}' for port in _free_ports(2)]}
  args = [sys.executable, '-m', 'tools.search', f'--workdir={tmp_path / "run"}',
          '--strategy=multi_worker', '--gin_file=experiments/search/synthetic_quickstart.gin',
          '--gin_bindings=build_supernet.num_layers = 3',
          '--gin_bindings=build_supernet.filter_multiplier = 2',
          '--gin_bindings=search_config.arch_start_step = 1', '--num_steps=2', '--crop_size=33',
          '--num_examples=8', '--image_size=40', '--num_classes=3']
  workers = []
  for index in range(2):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3', TF_CONFIG=json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
    workers.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True))
  outputs = [w.communicate(timeout=600) for w in workers]
  for worker, (out, err) in zip(workers, outputs):
    assert worker.returncode == 0, err[-3000:]
  assert 'on 2 replica(s)' in outputs[0][0] and 'done at step 2' in outputs[0][0]
  if not {'TF_ENABLE_ONEDNN_OPTS', 'TF_CPU_ALLOCATOR_USE_BFC', 'TF_NUM_INTRAOP_THREADS'} & set(
      os.environ):  # 33 px: small
    assert '(oneDNN kernels off, pooled CPU allocator, 1 thread per op)' in outputs[0][0]
  genotype = Genotype.from_json(tmp_path / 'run' / 'genotype.json')
  assert genotype.num_layers == 3 and genotype.num_blocks == 5
  assert (tmp_path / 'run' / 'checkpoints' / 'ckpt-2.index').exists()
  assert (tmp_path / 'run' / 'workers' / 'worker-1' / 'checkpoints' / 'ckpt-2.index').exists()
  assert not (tmp_path / 'run' / 'workers' / 'worker-1' / 'genotype.json').exists()
