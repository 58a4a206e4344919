"""The per-process CPU settings: made from the configured crop before TensorFlow is imported."""
import os
import subprocess
import sys

import pytest

from official.autodeeplab.training import search_settings
from official.autodeeplab.utils import cpu_runtime
from tests.conftest import ROOT

_CONFIGURE = (
    'import os, sys; from official.autodeeplab.utils import cpu_runtime as r; '
    'line = r.configure_for_crop(int(sys.argv[1])); '
    'print(os.environ[r.ONEDNN_ENV], os.environ.get(r.ALLOCATOR_ENV, "-"), '
    'os.environ[r.INTRA_OP_ENV], '
    '"tensorflow" in sys.modules, "|", line)')


@pytest.mark.parametrize('crop,preset,expected', [
    (65, {}, '0 true 1 False | oneDNN kernels off, pooled CPU allocator, 1 thread per op'),
    (cpu_runtime.SMALL_CROP + 1, {},
     '1 - 1 False | oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    (321, {}, '1 - 1 False | oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    # the user's settings win
    (65, {cpu_runtime.ONEDNN_ENV: '1', cpu_runtime.ALLOCATOR_ENV: '0'},
     '1 0 1 False | oneDNN kernels on, malloc CPU allocator, 1 thread per op'),
    (321, {cpu_runtime.ALLOCATOR_ENV: 'true', cpu_runtime.INTRA_OP_ENV: '2'},
     '1 true 2 False | oneDNN kernels on, pooled CPU allocator, 2 threads per op'),
])
def test_configure_for_crop_sets_the_variables_before_tensorflow(crop, preset, expected):
  env = {k: v for k, v in os.environ.items()
         if k not in (cpu_runtime.ONEDNN_ENV, cpu_runtime.ALLOCATOR_ENV, cpu_runtime.INTRA_OP_ENV)}
  result = subprocess.run([sys.executable, '-c', _CONFIGURE, str(crop)], cwd=ROOT, text=True,
                          env=dict(env, PYTHONPATH=ROOT, **preset), capture_output=True,
                          check=True)
  assert result.stdout.split() == expected.split()


def test_small_crops_keep_the_search_loops_functional():
  assert cpu_runtime.functional_loops(65) and cpu_runtime.functional_loops(cpu_runtime.SMALL_CROP)
  assert not cpu_runtime.functional_loops(cpu_runtime.SMALL_CROP + 1)
  assert not cpu_runtime.functional_loops(None)  # crop unknown when traced: TensorFlow's default


def test_configured_crop_size_reads_gin_files_and_bindings_without_tensorflow():
  paper = os.path.join(ROOT, 'experiments/search/cityscapes.gin')
  cwd = os.getcwd()
  os.chdir(ROOT)  # gin includes are relative to the working directory, as for the binaries
  try:
    assert search_settings.configured_crop_size([paper], []) == 321
    assert search_settings.configured_crop_size(
        [paper], ['search_data.crop_size = 65', 'build_supernet.num_layers = 4']) == 65
    assert search_settings.configured_crop_size([], []) == search_settings.SearchData().crop_size
    assert search_settings.configured_crop_size(['no/such.gin'], []) is None
  finally:
    os.chdir(cwd)
  # The real parse afterwards sees a clean slate.
  assert search_settings.search_data() == search_settings.SearchData()
