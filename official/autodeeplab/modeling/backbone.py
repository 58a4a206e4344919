"""The discrete Auto-DeepLab network path: the 3-conv stem and one cell per layer of the path."""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.modeling import cell as cell_lib
from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import tracking
from official.autodeeplab.search.space import STEM_FILTERS
from official.autodeeplab.search.space import STEM_STRIDES
from official.autodeeplab.search import space
from official.autodeeplab.search.genotype import Genotype

# Keras configs hold the genotype and the settings as dicts; the layers hold the objects.
GENOTYPE_CONFIG = {'genotype': (Genotype.to_dict, Genotype.from_dict),
                   **ops.TypedConfig.CONFIG_OBJECTS}


def low_level_cell(path) -> int | None:
  """Index of the cell whose output feeds the decoder's stride-4 input, None for the stem.

  A path starting at level 0 gives the last cell of its first run at level 0 (cell 2 for the
  paper's path, Google's 'Cell_2' end point of hnasnet). A path starting at level 1 has no cell at
  stride 4 before it goes coarser; as Google's code does for such a backbone (nas_pnasnet's 'Stem'
  end point), the decoder then reads the stem's stride-4 output (128 channels).
  """
  if path[0] != 0:
    return None
  index = 0
  while index + 1 < len(path) and path[index + 1] == 0:
    index += 1
  return index


@keras.saving.register_keras_serializable('autodeeplab')
class Backbone(ops.TypedConfig, tracking.CheckpointLists, keras.layers.Layer):
  """Stem + cells along a genotype's path; returns (final features, stride-4 features).

  As in Google's `nas_network._build_nas_base`: the stem's 2nd conv output (64 ch, stride 2) and
  3rd (128 ch, stride 4), both after BN and before the ReLU, are the first two 'previous cell
  outputs'. When the path moves to a finer level, H^{l-1} is bilinearly resized x2 before the cell;
  when it moves to a coarser level (the first cell included, for a path starting at level 1), the
  cell's ops reading its inputs use stride 2. The last cell's output goes through a ReLU before it
  leaves the backbone (for ASPP).

  Args:
    genotype: the architecture.
    filter_multiplier: F (S/M/L: 20/32/48); a level-k cell has F * 2**k filters per block.
    drop_path_keep_prob: scheduled drop path's final keep probability (1.0: off).
    settings: conv/BN settings.
  """
  CONFIG_OBJECTS = GENOTYPE_CONFIG

  def __init__(self, genotype: Genotype, filter_multiplier: int,
               drop_path_keep_prob: float = 1.0, settings: ops.LayerSettings = ops.LayerSettings(),
               **kwargs):
    super().__init__(**kwargs)
    self.genotype, self.filter_multiplier = genotype, filter_multiplier
    self.drop_path_keep_prob, self.settings = drop_path_keep_prob, settings
    self.stem_convs = [settings.conv(f, 3, strides=st) for f, st in zip(STEM_FILTERS, STEM_STRIDES)]
    self.stem_norms = [settings.batch_norm() for _ in STEM_FILTERS]
    self.cells = []
    for i, (level, coarser) in enumerate(zip(genotype.path, genotype.goes_coarser())):
      self.cells.append(cell_lib.DiscreteCell(
          genotype.cell, filter_multiplier * 2**level, stride=2 if coarser else 1,
          layer_ratio=(i + 1) / genotype.num_layers, drop_path_keep_prob=drop_path_keep_prob,
          settings=settings, seed=i, name=f'cell_{i}'))
    self.low_level_index = low_level_cell(genotype.path)

  def build(self, input_shape):
    channels = input_shape[-1]
    for conv, bn, filters in zip(self.stem_convs, self.stem_norms, STEM_FILTERS):
      conv.build((None, None, None, channels))
      bn.build((None, None, None, filters))
      channels = filters
    shapes = [(None, None, None, STEM_FILTERS[1]), (None, None, None, STEM_FILTERS[2])]
    blocks = self.genotype.num_blocks
    for cell, level in zip(self.cells, self.genotype.path):
      cell.build((shapes[-1], shapes[-2]))
      shapes.append((None, None, None, blocks * self.filter_multiplier * 2**level))
    self.built = True

  def output_channels(self) -> int:
    return self.genotype.num_blocks * self.filter_multiplier * 2**self.genotype.path[-1]

  def low_level_channels(self) -> int:
    if self.low_level_index is None:
      return STEM_FILTERS[-1]
    return self.genotype.num_blocks * self.filter_multiplier

  def call(self, images, training=False):
    x = images
    outputs = []
    for index, (conv, bn) in enumerate(zip(self.stem_convs, self.stem_norms)):
      x = bn(conv(tf.nn.relu(x) if index else x), training=training)
      outputs.append(x)
    outputs = outputs[1:]  # stride 2 (64 ch) and stride 4 (128 ch), before their ReLU
    sizes = space.level_sizes(ops.spatial_size(outputs[-1]))
    low_level = outputs[-1] if self.low_level_index is None else None
    level = 0
    for i, cell in enumerate(self.cells):
      target = self.genotype.path[i]
      h_prev = outputs[-1]
      if target < level:
        h_prev = ops.resize_bilinear(h_prev, sizes[target])
      level = target
      outputs.append(cell((h_prev, outputs[-2]), training=training))
      if i == self.low_level_index:
        low_level = outputs[-1]
    return tf.nn.relu(outputs[-1]), low_level

  def get_config(self):
    return self.config_of(genotype=self.genotype, filter_multiplier=self.filter_multiplier,
                          drop_path_keep_prob=self.drop_path_keep_prob, settings=self.settings)
