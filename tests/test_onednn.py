"""The per-process oneDNN choice: made from the configured crop before TensorFlow is imported."""
import os
import subprocess
import sys

import pytest

from official.autodeeplab.training import search_settings
from official.autodeeplab.utils import onednn
from tests.conftest import ROOT

_CHOOSE = ('import os, sys; from official.autodeeplab.utils import onednn; '
           'enabled = onednn.choose_for_crop(int(sys.argv[1])); '
           'print(os.environ[onednn.ENV], enabled, "tensorflow" in sys.modules)')


@pytest.mark.parametrize('crop,preset,expected', [
    (65, None, '0 False False'),
    (onednn.SMALL_CROP + 1, None, '1 True False'),
    (321, None, '1 True False'),
    (65, '1', '1 True False'),   # the user's setting wins
])
def test_choose_for_crop_sets_the_variable_before_tensorflow(crop, preset, expected):
  env = {k: v for k, v in os.environ.items() if k != onednn.ENV}
  if preset is not None:
    env[onednn.ENV] = preset
  result = subprocess.run([sys.executable, '-c', _CHOOSE, str(crop)], cwd=ROOT, text=True,
                          env=dict(env, PYTHONPATH=ROOT), capture_output=True, check=True)
  assert result.stdout.split() == expected.split()


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
