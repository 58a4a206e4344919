"""The discrete Auto-DeepLab network path: the 3-conv stem and one cell per layer of the path."""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.modeling import cell as cell_lib
from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking
from official.autodeeplab.search import space

STEM_FILTERS = (64, 64, 128)  # 3x3 convs with strides 2, 1, 2 (paper sec. 5.2)


def low_level_cell(path) -> int:
  """Index of the cell whose output feeds the decoder: the last of the path's first run at
  level 0 (stride 4); cell 2 for the paper's path."""
  index = 0
  while index + 1 < len(path) and path[index + 1] == 0:
    index += 1
  return index


@keras.saving.register_keras_serializable('autodeeplab')
class Backbone(tracking.CheckpointLists, keras.layers.Layer):
  """Stem + cells along a genotype's path; returns (final features, stride-4 features).

  The stem's 2nd conv output (64 ch, stride 2) and 3rd (128 ch, stride 4) are the first two
  'previous cell outputs'. Going up a level, H^{l-1} is bilinearly resized to the new level's size
  before the cell; going down, the cell's ops reading its inputs use stride 2.

  Args:
    genotype: `Genotype.to_dict()` (JSON-ready, for serialisation); path must start at level 0.
    filter_multiplier: F (S/M/L: 20/32/48); a level-k cell has F * 2**k filters per block.
    drop_path_keep_prob: scheduled drop path's final keep probability (1.0: off).
    settings: conv/BN settings as a dict of `ops.LayerSettings` fields.
  """

  def __init__(self, genotype: dict, filter_multiplier: int, drop_path_keep_prob: float = 1.0,
               settings: dict | None = None, **kwargs):
    super().__init__(**kwargs)
    self.genotype, self.filter_multiplier = genotype, filter_multiplier
    self.drop_path_keep_prob = drop_path_keep_prob
    self.settings_dict = dict(settings or {})
    s = ops.LayerSettings(**self.settings_dict)
    self.stem_convs = [s.conv(f, 3, strides=st) for f, st in zip(STEM_FILTERS, (2, 1, 2))]
    self.stem_norms = [s.batch_norm() for _ in STEM_FILTERS]
    path = genotype['path']
    self.cells = []
    for i, level in enumerate(path):
      previous = path[i - 1] if i else 0
      self.cells.append(cell_lib.DiscreteCell(
          genotype['cell'], filter_multiplier * 2**level, stride=2 if level > previous else 1,
          layer_ratio=(i + 1) / len(path), drop_path_keep_prob=drop_path_keep_prob,
          settings=self.settings_dict, name=f'cell_{i}'))
    self.low_level_index = low_level_cell(path)

  def build(self, input_shape):
    channels = input_shape[-1]
    for conv, bn, filters in zip(self.stem_convs, self.stem_norms, STEM_FILTERS):
      conv.build((None, None, None, channels))
      bn.build((None, None, None, filters))
      channels = filters
    shapes = [(None, None, None, STEM_FILTERS[1]), (None, None, None, STEM_FILTERS[2])]
    blocks = len(self.genotype['cell'])
    for cell, level in zip(self.cells, self.genotype['path']):
      cell.build((shapes[-1], shapes[-2]))
      shapes.append((None, None, None, blocks * self.filter_multiplier * 2**level))
    self.built = True

  def output_channels(self) -> int:
    return len(self.genotype['cell']) * self.filter_multiplier * 2**self.genotype['path'][-1]

  def low_level_channels(self) -> int:
    return len(self.genotype['cell']) * self.filter_multiplier

  def call(self, images, training=False):
    x = images
    outputs = []
    for conv, bn in zip(self.stem_convs, self.stem_norms):
      x = tf.nn.relu(bn(conv(x), training=training))
      outputs.append(x)
    outputs = outputs[1:]  # stride 2 (64 ch) and stride 4 (128 ch)
    sizes = [tf.shape(outputs[-1])[1:3]]
    for _ in range(1, space.NUM_LEVELS):
      sizes.append((sizes[-1] + 1) // 2)
    low_level = None
    level = 0
    for i, cell in enumerate(self.cells):
      target = self.genotype['path'][i]
      h_prev = outputs[-1]
      if target < level:
        h_prev = tf.image.resize(h_prev, sizes[target], method='bilinear')
      level = target
      outputs.append(cell((h_prev, outputs[-2]), training=training))
      if i == self.low_level_index:
        low_level = outputs[-1]
    return outputs[-1], low_level

  def get_config(self):
    return {**super().get_config(), 'genotype': self.genotype,
            'filter_multiplier': self.filter_multiplier,
            'drop_path_keep_prob': self.drop_path_keep_prob, 'settings': self.settings_dict}
