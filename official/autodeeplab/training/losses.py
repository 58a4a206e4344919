"""Segmentation loss shared by search and retrain."""
import tensorflow as tf

from official.autodeeplab.data.datasets import IGNORE_LABEL


def segmentation_loss(labels: tf.Tensor, logits: tf.Tensor, num_replicas: int = 1,
                      ignore_label: int = IGNORE_LABEL) -> tf.Tensor:
  """Mean pixel cross-entropy over labelled pixels (label `ignore_label` excluded).

  Divided by `num_replicas` so that summing the replicas' gradients gives the global mean.
  """
  labels = tf.cast(labels, tf.int32)
  valid = tf.not_equal(labels, ignore_label)
  safe = tf.where(valid, labels, 0)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
  valid = tf.cast(valid, losses.dtype)
  return tf.reduce_sum(losses * valid) / tf.maximum(tf.reduce_sum(valid), 1.0) / num_replicas
