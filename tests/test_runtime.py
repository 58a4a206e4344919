"""The runtime setting: resolved once from the job, the crop and the device, before TensorFlow."""
import os
import subprocess
import sys

import pytest

from official.autodeeplab.training import configs
from official.autodeeplab.training import experiment
from official.autodeeplab.utils import runtime
from tests.conftest import ROOT

_VARIABLES = (runtime.ONEDNN_ENV, runtime.ALLOCATOR_ENV, runtime.INTRA_OP_ENV)


@pytest.mark.parametrize('job,crop,preset,expected', [
    ('search', 65, {}, 'oneDNN kernels off, pooled CPU allocator, 1 thread per op'),
    ('search', runtime.SMALL_CROP + 1, {},
     'oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    ('search', 321, {}, 'oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    ('train', 65, {}, "TensorFlow's default kernels, allocator and threads"),
    # the user's settings win
    ('search', 65, {runtime.ONEDNN_ENV: '1', runtime.ALLOCATOR_ENV: '0'},
     'oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    ('search', 321, {runtime.ALLOCATOR_ENV: 'true', runtime.INTRA_OP_ENV: '2'},
     'oneDNN kernels on, pooled CPU allocator, 2 threads per op'),
])
def test_cpu_choices_by_job_and_crop(job, crop, preset, expected):
  resolved = runtime.resolve(job, crop, 'cpu', environ=preset, num_cores=2)
  assert resolved.describe() == f'CPU, 2 cores ({expected}), float32'
  assert resolved.functional_loops == (job == 'search' and crop <= runtime.SMALL_CROP)
  assert resolved.graph_optimizer == ('deduplicate' if job == 'search' else 'off')


def test_no_cpu_choices_on_an_accelerator():
  for device in ('gpu', 'tpu'):
    resolved = runtime.resolve('search', 65, device, environ={})
    assert not resolved.functional_loops and not resolved.pooled_allocator
    assert resolved.onednn and resolved.threads_per_op == 0 and resolved.environment() == {}
    assert resolved.describe() == f'{device.upper()}:0, float32'
  gpu = runtime.resolve('train', device='gpu', environ={}, precision='float16')
  assert gpu.describe() == 'GPU:0, float16 (mixed, dynamic loss scale)'
  assert gpu.policy == 'mixed_float16' and gpu.environment() == {}
  assert not gpu.float32_batch_norm and runtime.resolve('train', precision='bfloat16',
                                                        device='cpu').float32_batch_norm


@pytest.mark.parametrize('precision,device,message', [
    ('float8', 'cpu', 'runtime_options.precision=float8: expected one of float32, bfloat16, '
     'float16'),
    ('float16', 'tpu', 'runtime_options.precision=float16: TPUs compute in bfloat16'),
])
def test_precision_is_validated_before_tensorflow(precision, device, message):
  with pytest.raises(runtime.UserInputError, match=message):
    runtime.resolve('train', device=device, environ={}, precision=precision)
  assert runtime.resolve('search', 65, 'tpu', precision='bfloat16').policy == 'mixed_bfloat16'


def test_probe_device_without_tensorflow(tmp_path):
  (tmp_path / 'nvidia0').touch()
  gpu_glob = str(tmp_path / 'nvidia[0-9]*')
  assert runtime.probe_device('default', {}, gpu_glob) == 'gpu'
  assert runtime.probe_device('default', {'CUDA_VISIBLE_DEVICES': ''}, gpu_glob) == 'cpu'
  assert runtime.probe_device('default', {}, str(tmp_path / 'none*')) == 'cpu'
  assert runtime.probe_device('tpu', {}, str(tmp_path / 'none*')) == 'tpu'


_APPLY = ('import os, sys; from official.autodeeplab.utils import runtime as r; '
          'r.resolve("search", int(sys.argv[1]), "cpu").apply(); '
          'print(os.environ[r.ONEDNN_ENV], os.environ.get(r.ALLOCATOR_ENV, "-"), '
          'os.environ[r.INTRA_OP_ENV], "tensorflow" in sys.modules)')


@pytest.mark.parametrize('crop,expected', [(65, '0 true 1 False'), (321, '1 - 1 False')])
def test_apply_sets_the_variables_before_tensorflow(crop, expected):
  env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
  result = subprocess.run([sys.executable, '-c', _APPLY, str(crop)], cwd=ROOT, text=True,
                          env=dict(env, PYTHONPATH=ROOT), capture_output=True, check=True)
  assert result.stdout.split() == expected.split()


def test_configs_parse_gin_without_tensorflow():
  """A binary parses its gin files once, before TensorFlow is imported."""
  code = ('import sys, gin; from official.autodeeplab.training import configs; '
          'gin.parse_config_files_and_bindings(["experiments/search/cityscapes.gin"], '
          '["search_data.crop_size = 65"]); '
          'print(configs.search_data().crop_size, "tensorflow" in sys.modules)')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), check=True)
  assert result.stdout.split() == ['65', 'False']
  assert configs.search_data() == experiment.InputConfig()
