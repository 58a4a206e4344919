"""The retrain model: backbone (stem + cells along the path) + ASPP + DeepLabv3+ decoder.

Model sizes (paper Table 2) are the filter multiplier F: `sizes.MODEL_SIZES`.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import backbone as backbone_lib
from official.autodeeplab.modeling import cell as cell_lib
from official.autodeeplab.modeling import heads
from official.autodeeplab.modeling import ops
from official.autodeeplab.modeling import sizes
from official.autodeeplab.modeling import tracking
from official.autodeeplab.search.genotype import Genotype


@keras.saving.register_keras_serializable('autodeeplab')
class Segmenter(ops.TypedConfig, tracking.CheckpointLists, keras.Model):
  """images [N, H, W, 3] -> logits [N, H, W, num_classes].

  Args:
    genotype: the architecture (a path may start at level 0 or 1).
    num_classes: output classes.
    filter_multiplier: F.
    drop_path_keep_prob: scheduled drop path's final keep probability (1.0: off).
    settings: conv/BN settings (synchronized BN, weight decay, BN momentum/epsilon).
    input_channels: the images' channels (`datasets.ImageSpec.channels`; 3 for RGB).
  """
  CONFIG_OBJECTS = backbone_lib.GENOTYPE_CONFIG

  def __init__(self, genotype: Genotype, num_classes: int, filter_multiplier: int,
               drop_path_keep_prob: float = 1.0,
               settings: ops.LayerSettings = ops.LayerSettings(), input_channels: int = 3,
               **kwargs):
    super().__init__(**kwargs)
    self.genotype, self.num_classes = genotype, num_classes
    self.input_channels = input_channels
    self.filter_multiplier, self.drop_path_keep_prob = filter_multiplier, drop_path_keep_prob
    self.settings = settings
    self.backbone = backbone_lib.Backbone(genotype, filter_multiplier, drop_path_keep_prob,
                                          settings, name='backbone')
    self.output_stride = genotype.strides()[-1]
    self.aspp = heads.ASPP(self.output_stride, settings=settings, name='aspp')
    self.decoder = heads.Decoder(num_classes, settings=settings, name='decoder')

  def build(self, input_shape):
    self.backbone.build(input_shape)
    self.aspp.build((None, None, None, self.backbone.output_channels()))
    self.decoder.build(((None, None, None, self.aspp.filters),
                        (None, None, None, self.backbone.low_level_channels())))
    self.built = True

  def call(self, images, training=False):
    features, low_level = self.backbone(images, training=training)
    logits = self.decoder((self.aspp(features, training=training), low_level), training=training)
    # Logits leave the model in float32 in every precision (losses, softmax, argmax, export).
    return ops.resize_bilinear(tf.cast(logits, tf.float32), ops.spatial_size(images))

  def set_training_progress(self, progress, step=None) -> None:
    """Fraction of training done, for scheduled drop path; `step` (the training step) seeds its
    masks. Call it before each training step (in or out of a tf.function)."""
    for layer in self._flatten_layers():
      if isinstance(layer, cell_lib.DropPath):
        layer.progress.assign(tf.cast(progress, layer.progress.dtype))
        if step is not None:
          layer.step.assign(tf.cast(step, tf.int64))

  def get_config(self):
    return self.config_of(genotype=self.genotype, num_classes=self.num_classes,
                          filter_multiplier=self.filter_multiplier,
                          drop_path_keep_prob=self.drop_path_keep_prob, settings=self.settings,
                          input_channels=self.input_channels)


def build_segmenter(genotype: Genotype, num_classes: int,
                    model_size: str | None = 'S', filter_multiplier: int | None = None,
                    synchronized: bool = False, weight_decay: float = sizes.WEIGHT_DECAY,
                    drop_path_keep_prob: float = 1.0,
                    batch_norm_momentum: float = sizes.BATCH_NORM_MOMENTUM,
                    float32_batch_norm: bool = True, input_channels: int = 3) -> Segmenter:
  """The retrain model with the paper's settings (`sizes`: Google's BN decay, epsilon and L2).

  A short run needs a faster BN decay (`batch_norm_momentum`, e.g. 0.9) for its moving averages
  to reach the weights' statistics: at the default decay they take thousands of steps.
  `float32_batch_norm` is the runtime's choice of BN kernel (`ops.LayerSettings`).
  """
  if num_classes < 1:
    raise UserInputError(f'num_classes={num_classes}: must be positive')
  if not 0 <= batch_norm_momentum < 1:
    raise UserInputError(f'batch_norm_momentum={batch_norm_momentum}: expected [0, 1)')
  model = Segmenter(genotype, num_classes,
                    sizes.resolve_filter_multiplier(model_size, filter_multiplier),
                    drop_path_keep_prob,
                    ops.LayerSettings(synchronized=synchronized, weight_decay=weight_decay,
                                      batch_norm_momentum=batch_norm_momentum,
                                      float32_batch_norm=float32_batch_norm),
                    input_channels=input_channels)
  model.build((None, None, None, input_channels))
  return model
