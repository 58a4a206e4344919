"""ADE20K (MIT SceneParsing, ADEChallengeData2016).

  {data_dir}/images/{training,validation}/ADE_*.jpg
  {data_dir}/annotations/{training,validation}/ADE_*.png

Annotation 0 ('other') becomes 255; classes 1..150 become train ids 0..149.

Alternatively, when TensorFlow Datasets' `scene_parse150` is prepared under a TFDS data_dir
(`--tfds_data_dir`), the examples are read from there (tensorflow-datasets is then needed; it is
not a runtime dependency of the project). TFDS stores the annotation as 3 equal channels.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
from official.autodeeplab.data.converters import base
from official.autodeeplab.errors import UserInputError

SPLIT_DIRS = {'train': 'training', 'val': 'validation'}
TFDS_NAME = 'scene_parse150'


def list_records(data_dir: str, split: str, **unused) -> list[base.Record]:
  if split not in SPLIT_DIRS:
    raise UserInputError(f'--split={split}: ADE20K splits are {", ".join(SPLIT_DIRS)}')
  image_root = base.require_dir(os.path.join(data_dir, 'images', SPLIT_DIRS[split]),
                                f'ADE20K images of split {split!r}')
  label_root = base.require_dir(os.path.join(data_dir, 'annotations', SPLIT_DIRS[split]),
                                f'ADE20K annotations of split {split!r}')
  images = {os.path.splitext(os.path.basename(p))[0]: p
            for p in glob.glob(os.path.join(image_root, '*.jpg'))}
  labels = {os.path.splitext(os.path.basename(p))[0]: p
            for p in glob.glob(os.path.join(label_root, '*.png'))}
  return [base.Record(key, image, label) for key, image, label in base.pair_by_key(images, labels)]


def _tfds_split(tfds_data_dir: str, split: str):
  if split not in SPLIT_DIRS:
    raise UserInputError(f'--split={split}: ADE20K splits are {", ".join(SPLIT_DIRS)}')
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise UserInputError('--tfds_data_dir needs tensorflow-datasets '
                         '(pip install tensorflow-datasets)') from None
  try:
    builder = tfds.builder(TFDS_NAME, data_dir=tfds_data_dir)
    return builder.as_dataset(split=SPLIT_DIRS[split], shuffle_files=False)
  except Exception as e:  # TFDS raises several types for a missing or partial preparation
    raise UserInputError(f'{tfds_data_dir}: no prepared TFDS {TFDS_NAME} split {split!r} '
                         f'({type(e).__name__}); run its download_and_prepare first') from None


def tfds_num_examples(tfds_data_dir: str, split: str) -> int:
  dataset = _tfds_split(tfds_data_dir, split)
  count = int(dataset.cardinality())
  return count if count >= 0 else sum(1 for _ in dataset)


def tfds_shard_examples(index: int, num_shards: int, tfds_data_dir: str, split: str):
  """Shard `index` of the TFDS split as (serialized Example, pixel counts); see writer."""
  spec = datasets.get_spec('ade20k')
  dataset = _tfds_split(tfds_data_dir, split).shard(num_shards, index)
  for position, features in enumerate(dataset.as_numpy_iterator()):
    number = position * num_shards + index
    source = f'{tfds_data_dir}:{TFDS_NAME}/{split}[{number}]'
    image, annotation = features['image'], features['annotation']
    raw = annotation[..., 0] if annotation.ndim == 3 else annotation
    label = datasets.map_labels(raw.astype(np.int64), spec, source)
    if label.shape != image.shape[:2]:
      raise UserInputError(f'{source}: annotation is {label.shape[1]}x{label.shape[0]} but the '
                           f'image is {image.shape[1]}x{image.shape[0]}')
    yield (example.encode(example.png_bytes(image), 'png', f'{TFDS_NAME}_{split}_{number:06d}',
                          label.shape[0], label.shape[1], label),
           base.pixel_counts(label, spec))
