"""Small fake dataset trees in the real on-disk formats, for the converter tests."""
import os

import numpy as np
import scipy.io
from PIL import Image

from official.autodeeplab.data import datasets


def read_back(output_dir, split):
  """{filename: (image uint8, label uint8)} through the eval pipeline (no augmentation)."""
  import tensorflow as tf
  from official.autodeeplab.data import input_pipeline
  files = input_pipeline.split_files(output_dir, split)
  out = {}
  for serialized in tf.data.TFRecordDataset(files):
    ex = input_pipeline.example.parse(serialized)
    out[ex['filename'].numpy().decode()] = (ex['image'].numpy(), ex['label'].numpy())
  return out


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


# A user's own dataset (converters/folder.py): 4 classes told apart by colour and place.
FOLDER_CLASSES = ['background', 'road', 'car', 'sign']
FOLDER_PALETTE = [[0, 0, 0], [128, 64, 128], [0, 0, 142], [220, 220, 0]]


def folder_example(rng, size=(40, 48)):
  """(RGB image, class ids): a background with a road band, a car box and a sign disc, each in
  its own colour plus noise."""
  height, width = size
  label = np.zeros(size, np.uint8)
  label[height * 2 // 3:] = 1
  top, left = rng.integers(4, height // 2), rng.integers(0, width - 16)
  label[top:top + 10, left:left + 14] = 2
  y, x = np.mgrid[:height, :width]
  cy, cx = rng.integers(4, height // 2), rng.integers(4, width - 4)
  label[(y - cy) ** 2 + (x - cx) ** 2 <= 9] = 3
  colours = np.array([[90, 150, 90], [110, 110, 110], [200, 40, 40], [240, 220, 40]])
  image = colours[label] + rng.normal(0, 12, [*size, 3])
  return np.clip(image, 0, 255).astype(np.uint8), label


# Image kinds of a folder dataset: how `folder_image` stores the example's RGB picture.
IMAGE_KINDS = ('rgb', 'grey8', 'grey16', 'tiff16', 'rgba', 'bands4')


def folder_image(image: np.ndarray, kind: str, rng) -> tuple[np.ndarray, str]:
  """(the array to save, its file extension) of an 8-bit RGB picture as `kind`: 'grey8' (PNG),
  'grey16' (16-bit PNG, values x 257 as microscopes write them), 'tiff16' (16-bit grey TIFF),
  'rgba' (PNG with a random alpha), 'bands4' (16-bit 4-band TIFF: RGB and grey, x 257)."""
  grey = np.round(image.astype(np.float32).mean(-1)).astype(np.uint8)
  if kind == 'grey8':
    return grey, '.png'
  if kind in ('grey16', 'tiff16'):
    return grey.astype(np.uint16) * 257, '.png' if kind == 'grey16' else '.tif'
  if kind == 'rgba':
    return np.dstack([image, rng.integers(0, 256, image.shape[:2], dtype=np.uint8)]), '.png'
  if kind == 'bands4':
    return np.dstack([image, grey]).astype(np.uint16) * 257, '.tif'
  raise ValueError(kind)


def save_image(path: str, array: np.ndarray) -> None:
  """PNG (8 or 16-bit, grey or colour, through TensorFlow for 16-bit colour) or TIFF."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.endswith('.tif'):
    import tifffile
    if array.ndim == 2:
      tifffile.imwrite(path, array, photometric='minisblack')
    else:  # bands interleaved per pixel, one page
      tifffile.imwrite(path, array, photometric='rgb' if array.shape[-1] == 3 else 'minisblack',
                       planarconfig='contig')
  elif array.dtype == np.uint16 and array.ndim == 3:
    import tensorflow as tf
    with open(path, 'wb') as f:
      f.write(tf.io.encode_png(array).numpy())
  else:
    Image.fromarray(array).save(path)


def folder(root, layout='subfolders', label_format='ids', count=8, seed=0, spec=None,
           label_map=None, size=(40, 48), image_kind='rgb'):
  """Writes a folder dataset: layout 'subfolders' (images/{train,val}/), 'lists' (flat +
  train.txt / val.txt) or 'flat' (SHA-1 split). Masks: 'ids' (grey PNG; raw = id + 10 when
  `label_map`), or 'colours' (RGB PNG in FOLDER_PALETTE). Images: 'rgb' (JPEG and PNG
  alternately) or one of IMAGE_KINDS (`folder_image`). Returns {stem: class ids}."""
  import json
  rng = np.random.default_rng(seed)
  document = spec or {'name': 'streets', 'class_names': FOLDER_CLASSES,
                      'palette': FOLDER_PALETTE, 'label_format': label_format}
  if label_map:
    document['label_map'] = label_map
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, 'dataset.json'), 'w') as f:
    json.dump(document, f)
  ids, lists = {}, {'train': [], 'val': []}
  for i in range(count):
    stem = f'img_{i:03d}'
    split = 'val' if i % 4 == 3 else 'train'
    image, label = folder_example(rng, size)
    sub = split if layout == 'subfolders' else ''
    if image_kind == 'rgb':
      _save_rgb(os.path.join(root, 'images', sub, f'{stem}.jpg' if i % 2 else f'{stem}.png'),
                image)
    else:
      array, extension = folder_image(image, image_kind, rng)
      save_image(os.path.join(root, 'images', sub, stem + extension), array)
    if label_format == 'colours':
      _save_rgb(os.path.join(root, 'labels', sub, f'{stem}.png'),
                np.asarray(FOLDER_PALETTE, np.uint8)[label])
    else:
      _save_label(os.path.join(root, 'labels', sub, f'{stem}.png'),
                  label + 10 if label_map else label)
    ids[stem] = label
    lists[split].append(stem)
  if layout == 'lists':
    for split, stems in lists.items():
      with open(os.path.join(root, f'{split}.txt'), 'w') as f:
        f.write('\n'.join(stems) + '\n')
  return ids
