"""What every converter shares: the record of one example and reading/validating it.

A converter lists `Record`s for a split (image path, label path, how to read the label); this
module turns one record into a serialized tf.train.Example, checking on the way that the image
decodes, that image and label have the same size and that every label value is in the dataset's
label table. Errors name the file.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
from official.autodeeplab.data import images
from official.autodeeplab.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class Record:
  """One example to convert.

  Attributes:
    name: stored as image/filename (the image file's stem).
    image_path: JPEG or PNG file.
    label_path: annotation file.
    label_kind: 'png' (grey or palette PNG whose pixel values / palette indices are the raw
      labels) or 'mat' (SBD: MATLAB struct GTcls.Segmentation).
  """
  name: str
  image_path: str
  label_path: str
  label_kind: str = 'png'


def require_dir(path: str, what: str) -> str:
  if not os.path.isdir(path):
    raise UserInputError(f'{path}: missing directory ({what})')
  return path


def pair_by_key(images: dict[str, str], labels: dict[str, str],
                no_label: str = 'image has no label file',
                no_image: str = 'label has no image file') -> list[tuple[str, str, str]]:
  """Matches {key: image path} with {key: label path}; an unmatched file is an error, said by
  `no_label` / `no_image` (formatted with the key)."""
  for key in sorted(images):
    if key not in labels:
      raise UserInputError(f'{images[key]}: {no_label.format(key=key)}')
  for key in sorted(labels):
    if key not in images:
      raise UserInputError(f'{labels[key]}: {no_image.format(key=key)}')
  return [(key, images[key], labels[key]) for key in sorted(images)]


def read_raw_label(record: Record) -> np.ndarray:
  path = record.label_path
  if record.label_kind == 'mat':
    import scipy.io
    try:
      mat = scipy.io.loadmat(path)
      return np.asarray(mat['GTcls'][0, 0]['Segmentation'], np.int64)
    except Exception as e:  # scipy raises many types for bad files
      raise UserInputError(f'{path}: not an SBD annotation (.mat with GTcls.Segmentation): '
                           f'{type(e).__name__}') from None
  try:
    with Image.open(path) as label:
      label.load()
      if label.mode not in ('L', 'P'):
        raise UserInputError(f'{path}: expected a single-channel or palette PNG, got mode '
                             f'{label.mode}')
      return np.asarray(label, np.int64)  # palette PNGs: the indices, never the colours
  except (OSError, SyntaxError) as e:
    raise UserInputError(f'{path}: corrupt or truncated label image ({e})') from None


def to_example(record: Record, spec: datasets.DatasetSpec, half_resolution: bool = False,
               read_label=None) -> tuple[bytes, np.ndarray]:
  """(serialized tf.train.Example, per-class pixel counts [num_classes + 1], last = ignored).
  The image is read as it is (`data/images.py`, fully decoded: a truncated file fails here) and
  made what the spec's images are (`images.conform`); an 8-bit RGB JPEG or PNG is stored as
  the file itself, anything else re-encoded (`example.encode_image`). `read_label(record)` ->
  uint8 train ids, when the dataset's masks are not raw values mapped by the spec's label table
  (a folder dataset's colour masks)."""
  info = images.probe(record.image_path)
  array = images.conform(images.read(record.image_path, info), spec.image, record.image_path)
  label = (read_label(record) if read_label is not None else
           datasets.map_labels(read_raw_label(record), spec, record.label_path))
  if label.shape != array.shape[:2]:
    raise UserInputError(
        f'{record.label_path}: label is {label.shape[1]}x{label.shape[0]} but image '
        f'{record.image_path} is {info.width}x{info.height}')
  if half_resolution:
    size = (max(1, info.width // 2), max(1, info.height // 2))
    array = _resize(array, size)
    label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
  if not half_resolution and info.plain_rgb and spec.image == datasets.RGB8:
    with open(record.image_path, 'rb') as f:
      data, image_format = f.read(), info.format.lower()
  else:
    data, image_format = example.encode_image(array)
  return example.encode(data, image_format, record.name, label.shape[0], label.shape[1], label,
                        channels=array.shape[-1]), pixel_counts(label, spec)


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of [H, W, C] uint8 / uint16 to (width, height): 8-bit RGB as Pillow does
  it, other images band by band in floating point."""
  if array.dtype == np.uint8 and array.shape[-1] == 3:
    return np.asarray(Image.fromarray(array).resize(size, Image.BILINEAR))
  bands = [np.asarray(Image.fromarray(array[..., c].astype(np.float32), 'F').resize(
      size, Image.BILINEAR)) for c in range(array.shape[-1])]
  top = np.iinfo(array.dtype).max
  return np.clip(np.round(np.stack(bands, -1)), 0, top).astype(array.dtype)


def pixel_counts(label: np.ndarray, spec: datasets.DatasetSpec) -> np.ndarray:
  """[num_classes + 1] pixels per train id; the last entry counts ignored pixels."""
  return np.bincount(np.where(label == spec.ignore_label, spec.num_classes, label).ravel(),
                     minlength=spec.num_classes + 1)
