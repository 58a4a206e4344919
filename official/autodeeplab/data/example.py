"""The tf.train.Example schema of converted datasets (Google DeepLab's feature keys).

  image/encoded                     the image file's bytes (JPEG or PNG)
  image/format                      b'jpeg' or b'png'
  image/filename                    the example's name (file stem)
  image/height, image/width, image/channels
  image/segmentation/class/encoded  single-channel PNG of train ids (0..C-1, 255 ignored)
  image/segmentation/class/format   b'png'
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def encode(image_bytes: bytes, image_format: str, filename: str, height: int, width: int,
           label: np.ndarray, channels: int = 3) -> bytes:
  """A serialized tf.train.Example; `label` is an [H, W] uint8 train-id map."""
  import tensorflow as tf

  def feature(value):
    if isinstance(value, int):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  return tf.train.Example(features=tf.train.Features(feature={
      'image/encoded': feature(image_bytes),
      'image/format': feature(image_format.encode()),
      'image/filename': feature(filename.encode()),
      'image/height': feature(int(height)),
      'image/width': feature(int(width)),
      'image/channels': feature(int(channels)),
      'image/segmentation/class/encoded': feature(png_bytes(label)),
      'image/segmentation/class/format': feature(b'png'),
  })).SerializeToString()


def parse(serialized):
  """Serialized Example -> {'image': uint8 [H, W, 3], 'label': uint8 [H, W], 'filename': str}."""
  return decode(parse_features(serialized))


def parse_features(serialized):
  """The raw features, images still encoded (cheap: filter before decoding)."""
  import tensorflow as tf
  return tf.io.parse_single_example(serialized, {
      'image/encoded': tf.io.FixedLenFeature([], tf.string),
      'image/filename': tf.io.FixedLenFeature([], tf.string, default_value=''),
      'image/height': tf.io.FixedLenFeature([], tf.int64),
      'image/width': tf.io.FixedLenFeature([], tf.int64),
      'image/segmentation/class/encoded': tf.io.FixedLenFeature([], tf.string),
  })


def decode(features):
  """parse_features' output -> decoded image, label and filename."""
  import tensorflow as tf
  image = tf.io.decode_image(features['image/encoded'], channels=3, expand_animations=False)
  label = tf.io.decode_png(features['image/segmentation/class/encoded'], channels=1)[..., 0]
  shape = tf.stack([features['image/height'], features['image/width']])
  image = tf.ensure_shape(tf.reshape(image, tf.concat([tf.cast(shape, tf.int32), [3]], 0)),
                          [None, None, 3])
  label = tf.reshape(label, tf.cast(shape, tf.int32))
  return {'image': image, 'label': label, 'filename': features['image/filename']}
