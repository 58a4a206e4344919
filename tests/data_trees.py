"""Small fake dataset trees in the real on-disk formats, for the converter tests."""
import os

import numpy as np
import scipy.io
from PIL import Image

from official.autodeeplab.data import datasets


def _save_rgb(path, array, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, format=fmt)


def _save_label(path, array, palette=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(array.astype(np.uint8))
  if palette is not None:
    image.putpalette(palette.reshape(-1).tolist())  # an 'L' image becomes 'P', same indices
    assert image.mode == 'P'
  image.save(path)


def cityscapes(root, split='train', cities=('aachen', 'bonn'), per_city=2, size=(24, 32),
               seed=0):
  """Returns {stem: raw labelIds array}."""
  rng = np.random.default_rng(seed)
  raw = {}
  for city in cities:
    for i in range(per_city):
      stem = f'{city}_{i:06d}_000019'
      image = rng.integers(0, 255, [*size, 3], dtype=np.uint8)
      label = rng.integers(0, 34, size).astype(np.uint8)  # every official id 0..33
      _save_rgb(os.path.join(root, 'leftImg8bit', split, city, stem + '_leftImg8bit.png'), image)
      _save_label(os.path.join(root, 'gtFine', split, city, stem + '_gtFine_labelIds.png'), label)
      raw[stem] = label
  return raw


def voc(root, sbd_root, seed=0, size=(20, 28)):
  """VOC: train a0..a2 (a2 also in SBD), val v0..v1 (v1 also in SBD train); SBD adds s0..s2.

  Returns {name: raw label array} as the converter should read it (VOC PNG wins over SBD).
  """
  rng = np.random.default_rng(seed)
  palette = datasets.voc_palette()
  raw = {}
  voc_train, voc_val = ['a0', 'a1', 'a2'], ['v0', 'v1']
  sbd_train, sbd_val = ['s0', 'a2', 'v1'], ['s1', 's2']
  for name in voc_train + voc_val + ['s0', 's1', 's2']:
    _save_rgb(os.path.join(root, 'JPEGImages', name + '.jpg'),
              rng.integers(0, 255, [*size, 3], dtype=np.uint8), 'JPEG')
  for name in voc_train + voc_val:
    label = rng.integers(0, 21, size).astype(np.uint8)
    label[0, :] = 255  # boundary
    _save_label(os.path.join(root, 'SegmentationClass', name + '.png'), label, palette)
    raw[name] = label
  for name in sbd_train + sbd_val:
    label = rng.integers(0, 21, size).astype(np.uint8)
    os.makedirs(os.path.join(sbd_root, 'cls'), exist_ok=True)
    scipy.io.savemat(os.path.join(sbd_root, 'cls', name + '.mat'),
                     {'GTcls': {'Segmentation': label, 'Boundaries': np.zeros(1),
                                'CategoriesPresent': np.unique(label)}})
    raw.setdefault(name, label)
  lists = os.path.join(root, 'ImageSets', 'Segmentation')
  os.makedirs(lists, exist_ok=True)
  for split, names in (('train', voc_train), ('val', voc_val), ('trainval', voc_train + voc_val)):
    with open(os.path.join(lists, split + '.txt'), 'w') as f:
      f.write('\n'.join(names) + '\n')
  for split, names in (('train', sbd_train), ('val', sbd_val)):
    with open(os.path.join(sbd_root, split + '.txt'), 'w') as f:
      f.write('\n'.join(names) + '\n')
  return raw


def ade20k(root, split='training', count=3, size=(18, 26), seed=0):
  rng = np.random.default_rng(seed)
  raw = {}
  for i in range(count):
    name = f'ADE_{split[:5]}_{i:08d}'
    _save_rgb(os.path.join(root, 'images', split, name + '.jpg'),
              rng.integers(0, 255, [*size, 3], dtype=np.uint8), 'JPEG')
    label = rng.integers(0, 151, size).astype(np.uint8)
    _save_label(os.path.join(root, 'annotations', split, name + '.png'), label)
    raw[name] = label
  return raw
