"""The tf.train.Example schema of converted datasets (Google DeepLab's feature keys).

  image/encoded                     the image file's bytes (JPEG or PNG), or for 16-bit images and
                                    channel counts PNG cannot hold, zlib-compressed raw samples
                                    (little-endian, H x W x C)
  image/format                      b'jpeg', b'png' or b'raw.zlib'
  image/filename                    the example's name (file stem)
  image/height, image/width, image/channels
  image/segmentation/class/encoded  single-channel PNG of train ids (0..C-1, 255 ignored)
  image/segmentation/class/format   b'png'
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

RAW_FORMAT = 'raw.zlib'


def png_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def encode_image(array: np.ndarray) -> tuple[bytes, str]:
  """[H, W, C] uint8 or uint16 -> (bytes, format): PNG for 8-bit grey, RGB or 4 bands, else
  zlib-compressed raw samples (16 bits kept)."""
  if array.dtype == np.uint8 and array.shape[-1] in (1, 3, 4):
    return png_bytes(array[..., 0] if array.shape[-1] == 1 else array), 'png'
  samples = np.ascontiguousarray(array.astype(array.dtype.newbyteorder('<'), copy=False))
  return zlib.compress(samples.tobytes(), 1), RAW_FORMAT


def stored_as_raw(image) -> bool:
  """Whether images of a `datasets.ImageSpec` are stored as raw samples (`encode_image`)."""
  return image.bit_depth != 8 or image.channels not in (1, 3, 4)


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


def parse(serialized, image=None):
  """Serialized Example -> {'image': [H, W, C] uint8 or uint16 (8-bit RGB unless `image`, a
  `datasets.ImageSpec`, says otherwise), 'label': uint8 [H, W], 'filename': str}."""
  return decode(parse_features(serialized), image)


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


def decode(features, image=None):
  """parse_features' output -> decoded image, label and filename; `image` (a
  `datasets.ImageSpec`; default 8-bit RGB, what records written before it existed hold) says
  how the image is stored and how many channels it has."""
  import tensorflow as tf
  channels = 3 if image is None else image.channels
  if image is not None and stored_as_raw(image):
    dtype = tf.uint16 if image.bit_depth == 16 else tf.uint8
    decoded = tf.io.decode_raw(tf.io.decode_compressed(features['image/encoded'], 'ZLIB'), dtype,
                               little_endian=True)
  else:
    decoded = tf.io.decode_image(features['image/encoded'], channels=channels,
                                 expand_animations=False)
  label = tf.io.decode_png(features['image/segmentation/class/encoded'], channels=1)[..., 0]
  shape = tf.stack([features['image/height'], features['image/width']])
  decoded = tf.ensure_shape(tf.reshape(
      decoded, tf.concat([tf.cast(shape, tf.int32), [channels]], 0)), [None, None, channels])
  label = tf.reshape(label, tf.cast(shape, tf.int32))
  return {'image': decoded, 'label': label, 'filename': features['image/filename']}
