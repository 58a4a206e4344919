"""tf.data pipelines: normalisation, the paper's augmentation, and the search's trainA/trainB.

So far the pipeline reads in-memory arrays (the synthetic dataset); the TFRecord reader for
converted datasets plugs in at `from_arrays`'s place with the same augmentation.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

IGNORE_LABEL = 255


def normalize(image: tf.Tensor) -> tf.Tensor:
  """uint8 RGB -> float32 in [-1, 1]."""
  return tf.cast(image, tf.float32) / 127.5 - 1.0


def augment(image, label, crop_size: int, min_scale: float = 0.5, max_scale: float = 2.0,
            seed=None):
  """Random scale (0.5-2.0), random crop to crop_size with padding (image: mean, label: 255),
  random horizontal flip: the paper's training augmentation. Stateless given `seed` [2]."""
  seeds = tf.random.experimental.stateless_split(seed, 4)
  size = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = tf.random.stateless_uniform([], seeds[0], min_scale, max_scale)
  new_size = tf.cast(tf.round(size * scale), tf.int32)
  image = tf.image.resize(tf.cast(image, tf.float32), new_size, method='bilinear')
  label = tf.image.resize(label[..., tf.newaxis], new_size, method='nearest')
  # Pad to at least crop_size: the image with its mean (0 after normalisation), labels with 255.
  pad_h = tf.maximum(crop_size - new_size[0], 0)
  pad_w = tf.maximum(crop_size - new_size[1], 0)
  image = normalize(image * 1.0)  # floats in [-1, 1]; padding with 0 = the mean of [-1, 1]
  image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
  label = tf.pad(tf.cast(label, tf.int32) - IGNORE_LABEL, [[0, pad_h], [0, pad_w], [0, 0]])
  label = label + IGNORE_LABEL
  stacked = tf.concat([image, tf.cast(label, tf.float32)], -1)
  stacked = tf.image.stateless_random_crop(stacked, [crop_size, crop_size, 4], seeds[1])
  stacked = tf.image.stateless_random_flip_left_right(stacked, seeds[2])
  return stacked[..., :3], tf.cast(stacked[..., 3], tf.int32)


def from_arrays(images: np.ndarray, labels: np.ndarray, batch_size: int, crop_size: int,
                seed: int = 0, training: bool = True) -> tf.data.Dataset:
  """Batches from in-memory uint8 images [N, H, W, 3] and labels [N, H, W]; repeats if training.

  Deterministic: the same seed gives the same batches, and the iterator can be saved in a
  tf.train.Checkpoint to resume mid-epoch.
  """
  ds = tf.data.Dataset.from_tensor_slices((images, labels))
  if not training:
    return ds.map(lambda i, l: (normalize(i), tf.cast(l, tf.int32))).batch(batch_size)
  ds = ds.repeat().shuffle(len(images), seed=seed)
  ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
  ds = ds.map(lambda pair, s: augment(pair[0], pair[1], crop_size, seed=s),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def search_halves(num_examples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Indices of trainA (weights) and trainB (architecture): a fixed random half each."""
  order = np.random.default_rng(seed).permutation(num_examples)
  half = num_examples // 2
  return np.sort(order[:half]), np.sort(order[half:])
