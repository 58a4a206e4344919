"""Make layers held in Python lists visible to tf.train.Checkpoint.

Keras 3 (TensorFlow backend) tracks lists assigned to layer attributes for its own bookkeeping,
but hands them to tf.train.Checkpoint only when exporting a SavedModel: in a checkpoint, every
layer and variable kept in a list is silently missing (only directly assigned ones are saved).
Layers of this project that keep sublayers or variables in lists mix this class in, which adds
each list element as a checkpoint child named `<attribute>_<index>`; tests assert with
`tf.train.list_variables` that every variable of every model is saved.
"""
from __future__ import annotations

import tensorflow as tf


class CheckpointLists:
  """Mixin for keras.layers.Layer / keras.Model subclasses (put it first in the bases)."""

  @tf.__internal__.tracking.no_automatic_dependency_tracking
  def _trackable_children(self, save_type='checkpoint', **kwargs):
    children = super()._trackable_children(save_type, **kwargs)
    if save_type == 'checkpoint':
      for attribute in getattr(self, '_tracked', ()):
        value = getattr(self, attribute, None)
        if isinstance(value, (list, tuple)):
          for index, item in enumerate(value):
            if isinstance(item, tf.__internal__.tracking.Trackable):
              children.setdefault(f'{attribute}_{index}', item)
    return children
