"""What every converter shares: the record of one example and reading/validating it.

A converter lists `Record`s for a split (image path, label path, how to read the label); this
module turns one record into a serialized tf.train.Example, checking on the way that the image
decodes, that image and label have the same size and that every label value is in the dataset's
label table. Errors name the file.
"""
from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from PIL import Image

from official.autodeeplab.data import datasets
from official.autodeeplab.data import example
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


def load_image(path: str) -> tuple[bytes, Image.Image]:
  try:
    with open(path, 'rb') as f:
      data = f.read()
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes fully: truncated files fail here
  except FileNotFoundError:
    raise UserInputError(f'{path}: no such image') from None
  except (OSError, SyntaxError) as e:
    raise UserInputError(f'{path}: corrupt or truncated image ({e})') from None
  if image.format not in ('JPEG', 'PNG'):
    raise UserInputError(f'{path}: expected a JPEG or PNG image, got {image.format}')
  return data, image


def to_example(record: Record, spec: datasets.DatasetSpec, half_resolution: bool = False,
               read_label=None) -> tuple[bytes, np.ndarray]:
  """(serialized tf.train.Example, per-class pixel counts [num_classes + 1], last = ignored).
  `read_label(record)` -> uint8 train ids, when the dataset's masks are not raw values mapped by
  the spec's label table (a folder dataset's colour masks)."""
  data, image = load_image(record.image_path)
  label = (read_label(record) if read_label is not None else
           datasets.map_labels(read_raw_label(record), spec, record.label_path))
  if label.shape != (image.height, image.width):
    raise UserInputError(
        f'{record.label_path}: label is {label.shape[1]}x{label.shape[0]} but image '
        f'{record.image_path} is {image.width}x{image.height}')
  image_format = image.format.lower()
  if half_resolution:
    size = (max(1, image.width // 2), max(1, image.height // 2))
    image = image.convert('RGB').resize(size, Image.BILINEAR)
    label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
    data, image_format = example.png_bytes(np.asarray(image)), 'png'
  elif image.mode != 'RGB':
    data, image_format = example.png_bytes(np.asarray(image.convert('RGB'))), 'png'
  return example.encode(data, image_format, record.name, label.shape[0], label.shape[1],
                        label), pixel_counts(label, spec)


def pixel_counts(label: np.ndarray, spec: datasets.DatasetSpec) -> np.ndarray:
  """[num_classes + 1] pixels per train id; the last entry counts ignored pixels."""
  return np.bincount(np.where(label == spec.ignore_label, spec.num_classes, label).ravel(),
                     minlength=spec.num_classes + 1)
