"""The retrain model as Keras users share it: raw pixel values in, logits out, in one `.keras`.

`SegmentationModel` wraps a `segmenter.Segmenter` with the dataset's normalisation in front
(`datasets.normalize`: RGB in [0, 255] for 8-bit data, the image spec's range otherwise), so
`keras.saving.load_model("model.keras")` gives a model that takes images as they are and returns
logits [N, H, W, classes], and `model.fit` fine-tunes it. Its config holds the segmenter's (the
genotype, F, classes, layer settings), the image spec and the class names: the archive is the
whole model. The classes are registered (`autodeeplab>...`); a fresh process needs
`official.autodeeplab` importable (the installed package) and imports this module to load one.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from official.autodeeplab.data import datasets
from official.autodeeplab.modeling import segmenter as segmenter_lib


@keras.saving.register_keras_serializable('autodeeplab')
class SegmentationModel(keras.Model):
  """images (raw values, float [N, H, W, channels]) -> logits [N, H, W, classes].

  Args:
    segmenter: the retrain model (takes images normalised to [-1, 1]).
    image: what its images are (`datasets.ImageSpec.to_dict()`; default 8-bit RGB).
    class_names: the classes' names, kept with the model.
  """

  def __init__(self, segmenter: segmenter_lib.Segmenter, image: dict | None = None,
               class_names: Sequence[str] | None = None, **kwargs):
    super().__init__(**kwargs)
    self.segmenter = segmenter
    self.image_spec = datasets.ImageSpec.from_dict(image)
    self.class_names = list(class_names) if class_names is not None else None

  def build(self, input_shape):
    if not self.segmenter.built:  # a trained segmenter comes built
      self.segmenter.build(input_shape)
    self.built = True

  def call(self, images, training=False):
    return self.segmenter(datasets.normalize(tf.cast(images, tf.float32), self.image_spec),
                          training=training)

  def get_config(self):
    return {**super().get_config(),
            'segmenter': keras.saving.serialize_keras_object(self.segmenter),
            'image': self.image_spec.to_dict(), 'class_names': self.class_names}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    segmenter = keras.saving.deserialize_keras_object(config.pop('segmenter'))
    return cls(segmenter, **config)
