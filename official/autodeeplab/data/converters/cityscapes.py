"""Cityscapes fine annotations.

  {data_dir}/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
  {data_dir}/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

labelIds are mapped to the 19 train ids by the official label table (cityscapesScripts); ids not
evaluated become 255. `--half_resolution` stores 1024x512 images (the search's input).
"""
from __future__ import annotations

import glob
import os

from official.autodeeplab.data.converters import base

IMAGE_SUFFIX = '_leftImg8bit.png'
LABEL_SUFFIX = '_gtFine_labelIds.png'


def list_records(data_dir: str, split: str, **unused) -> list[base.Record]:
  image_root = base.require_dir(os.path.join(data_dir, 'leftImg8bit', split),
                                f'Cityscapes images of split {split!r}')
  label_root = base.require_dir(os.path.join(data_dir, 'gtFine', split),
                                f'Cityscapes gtFine labels of split {split!r}')
  images = {os.path.basename(p)[:-len(IMAGE_SUFFIX)]: p
            for p in glob.glob(os.path.join(image_root, '*', '*' + IMAGE_SUFFIX))}
  labels = {os.path.basename(p)[:-len(LABEL_SUFFIX)]: p
            for p in glob.glob(os.path.join(label_root, '*', '*' + LABEL_SUFFIX))}
  return [base.Record(key, image, label) for key, image, label in base.pair_by_key(images, labels)]
