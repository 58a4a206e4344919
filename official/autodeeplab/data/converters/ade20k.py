"""ADE20K (MIT SceneParsing, ADEChallengeData2016).

  {data_dir}/images/{training,validation}/ADE_*.jpg
  {data_dir}/annotations/{training,validation}/ADE_*.png

Annotation 0 ('other') becomes 255; classes 1..150 become train ids 0..149.

Alternatively, when TensorFlow Datasets' `scene_parse150` is prepared under a TFDS data_dir
(`--tfds_data_dir`), the examples are read from there: converters/tfds_source.py, of which it is
one case (TFDS stores the annotation as 3 equal channels).
"""
from __future__ import annotations

import glob
import os

from official.autodeeplab.data.converters import base
from official.autodeeplab.errors import UserInputError

SPLIT_DIRS = {'train': 'training', 'val': 'validation'}


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
