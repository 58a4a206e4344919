"""Parameter and multiply-add counts: the counter against hand counts, the paper's Table 2."""
import keras
import pytest
import tensorflow as tf

from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search.genotype import PAPER_GENOTYPE
from official.autodeeplab.utils import complexity


class Convs(keras.Model):
  """Named like the segmenter's components so the breakdown can be checked by hand."""

  def __init__(self):
    super().__init__()
    self.aspp = keras.Sequential([keras.layers.Conv2D(8, 3, dilation_rate=6, padding='same',
                                                      use_bias=False)], name='aspp')
    self.decoder = keras.Sequential([keras.layers.DepthwiseConv2D(3, padding='same',
                                                                  use_bias=False),
                                     keras.layers.Conv2D(4, 1, strides=2, use_bias=False)],
                                    name='decoder')

  def call(self, x, training=False):
    return self.decoder(self.aspp(x))


def test_counter_matches_hand_count():
  model = Convs()
  model(tf.zeros([1, 20, 30, 3]))
  counts = complexity.multiply_adds(model, 20, 30)
  # atrous 3x3, 3 -> 8 at 20x30 (TensorFlow pads it through SpaceToBatch: not counted)
  assert counts['aspp'] == 9 * 3 * 8 * 20 * 30
  # depthwise 3x3 on 8 channels at 20x30, then 1x1 8 -> 4 at 10x15
  assert counts['decoder'] == 9 * 8 * 20 * 30 + 8 * 4 * 10 * 15
  assert counts['total'] == counts['aspp'] + counts['decoder']


PAPER = {'S': (10.15e6, 333.25e9), 'M': (21.62e6, 460.93e9), 'L': (44.42e6, 695.03e9)}
EXACT_1024 = {'S': 317.54e9, 'M': 434.99e9, 'L': 653.58e9}


@pytest.mark.parametrize('size', ['S', pytest.param('M', marks=pytest.mark.slow),
                                  pytest.param('L', marks=pytest.mark.slow)])
def test_table_2(size):
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 19, size)
  params, madds = PAPER[size]
  assert complexity.count_parameters(model) == pytest.approx(params, rel=0.0005)
  # Exact conv count at 1024x2048: the architecture's own work, 4.7-6% under the paper.
  assert complexity.multiply_adds(model, 1024, 2048)['total'] == pytest.approx(
      EXACT_1024[size], rel=1e-3)
  # TensorFlow's profiler at DeepLab's Cityscapes evaluation crop 1025x2049: within 2%.
  profiled = complexity.tf_profiler_multiply_adds(model, 1025, 2049)
  assert profiled == pytest.approx(madds, rel=0.02)
  assert profiled < madds
  # README's Results table is what `tools.describe --image_size=1025,2049` prints (this count).
  row = next(line for line in _readme_lines() if line.startswith(f'| Auto-DeepLab-{size} |'))
  assert f'| {profiled / 1e9:.2f}B ({100 * (profiled / madds - 1):+.1f}%) |' in row, row


def _readme_lines():
  import os
  from tests.conftest import ROOT
  with open(os.path.join(ROOT, 'README.md')) as f:
    return f.read().splitlines()
