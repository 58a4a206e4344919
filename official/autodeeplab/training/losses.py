"""Segmentation loss shared by search and retrain, with DeepLab's hard-pixel mining."""
import tensorflow as tf

from official.autodeeplab.data.datasets import IGNORE_LABEL


def segmentation_loss(labels: tf.Tensor, logits: tf.Tensor, num_replicas: int = 1,
                      ignore_label: int = IGNORE_LABEL, top_k_fraction=1.0) -> tf.Tensor:
  """Mean pixel cross-entropy over labelled pixels (label `ignore_label` excluded).

  With `top_k_fraction` < 1 (a float or a scalar tensor), the mean is over the hardest
  `top_k_fraction` of this replica's labelled pixels only (online hard-pixel mining, DeepLab's
  `top_k_percent_pixels`); at 1.0 it is the plain mean. Divided by `num_replicas` so that summing
  the replicas' gradients gives the global mean.
  """
  labels = tf.cast(labels, tf.int32)
  valid = tf.not_equal(labels, ignore_label)
  safe = tf.where(valid, labels, 0)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
  valid = tf.cast(valid, losses.dtype)
  if isinstance(top_k_fraction, (int, float)) and top_k_fraction >= 1.0:
    return tf.reduce_sum(losses * valid) / tf.maximum(tf.reduce_sum(valid), 1.0) / num_replicas
  # Unlabelled pixels rank below every labelled one (cross-entropy is never negative).
  ranked = tf.reshape(tf.where(valid > 0, losses, -1.0), [-1])
  count = tf.reduce_sum(valid)
  k = tf.cast(tf.maximum(tf.math.round(count * tf.cast(top_k_fraction, losses.dtype)), 1.0),
              tf.int32)
  hardest = tf.math.top_k(ranked, k=k, sorted=False).values
  total = tf.reduce_sum(tf.maximum(hardest, 0.0))  # no labelled pixel at all: zero loss
  return total / tf.cast(k, losses.dtype) / num_replicas


def top_k_fraction(step, target: float, ramp_steps: int):
  """The hard-pixel fraction at `step`: from 1.0 linearly down to `target` over `ramp_steps`
  steps (DeepLab's `hard_example_mining_step`; 0: the target from the start)."""
  if target >= 1.0:
    return 1.0
  if ramp_steps <= 0:
    return target
  done = tf.minimum(tf.cast(step, tf.float32) / float(ramp_steps), 1.0)
  return 1.0 - (1.0 - target) * done
