"""Any prepared TensorFlow Datasets segmentation dataset, converted like a folder dataset.

  tools.convert_dataset --dataset=tfds --tfds_name=oxford_iiit_pet --image_key=image \
      --label_key=segmentation_mask --dataset_spec=pets.json --tfds_split=test --split=val \
      [--tfds_data_dir=~/tensorflow_datasets] --output_dir=records

The class names and label map come from `--dataset_spec` (a dataset.json, "ids" format: e.g.
oxford_iiit_pet's masks hold 1/2/3 and need a `label_map`), or, without one, from the label
feature's own `ClassLabel` names when it has them. Masks stored with 3 equal channels (TFDS's
scene_parse150) are read from the first. ADE20K from a prepared `scene_parse150` is a case of this
(`SCENE_PARSE150`). tensorflow-datasets is needed for this source only (requirements-dev.txt).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
from official.autodeeplab.data.converters import base
from official.autodeeplab.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """Where the examples come from: a TFDS builder's split and the features that hold them."""
  name: str
  image_key: str
  label_key: str
  tfds_split: str
  data_dir: str | None = None

  def describe(self) -> str:
    return f'{self.data_dir or "~/tensorflow_datasets"}:{self.name}/{self.tfds_split}'


def _tfds():
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise UserInputError('--dataset=tfds needs tensorflow-datasets (pip install '
                         'tensorflow-datasets)') from None
  return tfds


def _builder(source: TfdsSource):
  tfds = _tfds()
  try:
    return tfds.builder(source.name, data_dir=source.data_dir)
  except Exception as e:  # TFDS raises several types for an unknown name
    raise UserInputError(f'--tfds_name={source.name}: not a TFDS dataset ({type(e).__name__}: '
                         f'{str(e).splitlines()[0][:120]})') from None


def load_split(source: TfdsSource):
  """The split as a tf.data.Dataset of feature dicts; one line when it is not prepared."""
  builder = _builder(source)
  try:
    dataset = builder.as_dataset(split=source.tfds_split, shuffle_files=False)
  except Exception as e:  # TFDS raises several types for a missing or partial preparation
    raise UserInputError(f'{source.describe()}: no prepared TFDS {source.name} split '
                         f'{source.tfds_split!r} ({type(e).__name__}); run its '
                         'download_and_prepare first') from None
  keys = set(dataset.element_spec)
  for flag, key in (('image_key', source.image_key), ('label_key', source.label_key)):
    if key not in keys:
      raise UserInputError(f'--{flag}={key}: {source.name} has the features {sorted(keys)}')
  return dataset


def class_names(source: TfdsSource) -> list[str] | None:
  """The label feature's ClassLabel names, when it is one; else None."""
  features = _builder(source).info.features
  names = (getattr(features[source.label_key], 'names', None)
           if source.label_key in features.keys() else None)
  return list(names) if names else None


def num_examples(source: TfdsSource) -> int:
  dataset = load_split(source)
  count = int(dataset.cardinality())
  return count if count >= 0 else sum(1 for _ in dataset)


def shard_examples(index: int, num_shards: int, source: TfdsSource, spec: datasets.DatasetSpec,
                   prefix: str):
  """Shard `index` of the split as (serialized Example, pixel counts); see writer. Examples are
  named `{prefix}_{number:06d}` by their position in the split."""
  dataset = load_split(source).shard(num_shards, index)
  for position, features in enumerate(dataset.as_numpy_iterator()):
    number = position * num_shards + index
    where = f'{source.describe()}[{number}]'
    image, mask = np.asarray(features[source.image_key]), np.asarray(features[source.label_key])
    if mask.ndim == 3 and (mask.shape[-1] == 1 or (mask == mask[..., :1]).all()):
      mask = mask[..., 0]
    if mask.ndim != 2:
      raise UserInputError(f'{where}: --label_key={source.label_key} is no single-channel mask '
                           f'(shape {list(mask.shape)})')
    if image.ndim == 3 and image.shape[-1] == 1:
      image = np.repeat(image, 3, -1)
    label = datasets.map_labels(mask.astype(np.int64), spec, where)
    if label.shape != image.shape[:2]:
      raise UserInputError(f'{where}: mask is {label.shape[1]}x{label.shape[0]} but the image '
                           f'is {image.shape[1]}x{image.shape[0]}')
    yield (example.encode(example.png_bytes(image[..., :3]), 'png', f'{prefix}_{number:06d}',
                          label.shape[0], label.shape[1], label),
           base.pixel_counts(label, spec))


# ADE20K from a prepared scene_parse150: TFDS's names for the project's splits.
SCENE_PARSE150 = 'scene_parse150'
SCENE_PARSE150_SPLITS = {'train': 'train', 'val': 'validation'}


def scene_parse150(data_dir: str, split: str) -> TfdsSource:
  if split not in SCENE_PARSE150_SPLITS:
    raise UserInputError(f'--split={split}: ADE20K splits are '
                         f'{", ".join(SCENE_PARSE150_SPLITS)}')
  return TfdsSource(SCENE_PARSE150, 'image', 'annotation', SCENE_PARSE150_SPLITS[split], data_dir)
