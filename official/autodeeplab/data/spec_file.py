"""`dataset.json`: a dataset described in a file instead of in code (pure Python).

A user's own dataset is a folder with a `dataset.json` (`read`); the converted records directory
carries the resulting spec in its own `dataset.json`, and a trained workdir in `model.json`
(`document` / `from_document`), so every later stage knows the class names, palette and label
values without a `--dataset` flag.

The user's file:
  {"name": "potholes", "class_names": ["road", "pothole"],        required
   "palette": [[128, 64, 128], [255, 0, 0]],                       optional, one RGB per class
   "ignore_label": 255,                                            optional, a raw mask value
   "label_format": "ids",                                          "ids" (default) or "colours"
   "label_map": {"0": 0, "7": 1, "3": 255},                        "ids" only: raw value -> class
   "ignore_colour": [0, 0, 0],                                     "colours" only
   "image": {"channels": 1, "bit_depth": 16,                       optional; inferred from the
             "value_range": [0, 4095] | "auto"}}                   files when absent
"image" says what the images are: the converter refuses a file that differs (or, without it,
files that differ from each other), and the value range is what the models map to [-1, 1]
("auto": the train split's 0.5th and 99.5th percentiles, computed at conversion; the default
for 16-bit data; 8-bit data defaults to [0, 255]).
"""
from __future__ import annotations

import json
import re
import typing
from typing import Any

import numpy as np

from official.autodeeplab.data import datasets
from official.autodeeplab.errors import UserInputError

SPEC_FILE = 'dataset.json'
LABEL_FORMATS = ('ids', 'colours')
_KEYS = {'name', 'class_names', 'palette', 'ignore_label', 'label_format', 'label_map',
         'ignore_colour', 'image'}
_IMAGE_KEYS = {'channels', 'bit_depth', 'value_range'}
AUTO = 'auto'


class ImageRequest(typing.NamedTuple):
  """What a dataset.json says of its images (None: to be inferred from the files)."""
  channels: int | None = None
  bit_depth: int | None = None
  value_range: tuple[float, float] | str | None = None  # numbers, 'auto', or None


class Parsed(typing.NamedTuple):
  """A user's dataset.json: the spec, how masks are read, colours -> ids, the image request."""
  spec: datasets.DatasetSpec
  label_format: str
  colours: dict | None
  image: ImageRequest


def _colour(value: Any, where: str) -> tuple[int, int, int]:
  if (not isinstance(value, list) or len(value) != 3 or
      not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
    raise UserInputError(f'{where}: expected [r, g, b] with integers 0-255, got {value!r}')
  return tuple(value)


def _byte(value: Any, where: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
    raise UserInputError(f'{where}: expected an integer 0-255, got {value!r}')
  return value


def _image_request(data: Any, source: str) -> ImageRequest:
  """The "image" field, validated."""
  if data is None:
    return ImageRequest()
  if not isinstance(data, dict) or set(data) - _IMAGE_KEYS:
    raise UserInputError(f'{source}: "image" must be an object with "channels", "bit_depth" and '
                         f'"value_range" (each optional), got {data!r}')
  channels, depth, value_range = (data.get(k) for k in ('channels', 'bit_depth', 'value_range'))
  if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool)
                               or not 1 <= channels <= 64):
    raise UserInputError(f'{source}: "image": "channels" must be an integer 1-64, got '
                         f'{channels!r}')
  if depth is not None and depth not in (8, 16):
    raise UserInputError(f'{source}: "image": "bit_depth" must be 8 or 16, got {depth!r}')
  if value_range is not None and value_range != AUTO:
    top = (1 << (depth or 16)) - 1
    if (not isinstance(value_range, list) or len(value_range) != 2 or
        not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
        or not 0 <= value_range[0] < value_range[1] <= top):
      raise UserInputError(f'{source}: "image": "value_range" must be "auto" or [lo, hi] with '
                           f'0 <= lo < hi <= {top}, got {value_range!r}')
    value_range = (float(value_range[0]), float(value_range[1]))
  return ImageRequest(channels, depth, value_range)


def parse(data: Any, source: str) -> Parsed:
  """A user's dataset.json (parsed JSON) -> (spec, label_format, {colour: train id} for
  "colours", else None, the image request); every error names `source` and the field."""
  if not isinstance(data, dict):
    raise UserInputError(f'{source}: expected a JSON object with "name" and "class_names"')
  unknown = sorted(set(data) - _KEYS)
  if unknown:
    raise UserInputError(f'{source}: unknown field {unknown[0]!r}; expected {sorted(_KEYS)}')
  name = data.get('name')
  if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9_.-]*', name):
    raise UserInputError(f'{source}: "name" must be letters, digits, _ . - (got {name!r})')
  names = data.get('class_names')
  if not isinstance(names, list) or len(names) < 2 or not all(
      isinstance(n, str) and n.strip() for n in names):
    raise UserInputError(f'{source}: "class_names" must list at least 2 non-empty names')
  if len(names) > 255:
    raise UserInputError(f'{source}: {len(names)} classes; at most 255 (class ids are bytes)')
  duplicated = sorted({n for n in names if names.count(n) > 1})
  if duplicated:
    raise UserInputError(f'{source}: "class_names" names {duplicated[0]!r} twice')
  palette = data.get('palette')
  if palette is None:
    palette = datasets.voc_palette(len(names))
  else:
    if not isinstance(palette, list) or len(palette) != len(names):
      got = len(palette) if isinstance(palette, list) else repr(palette)
      raise UserInputError(f'{source}: "palette" must hold one [r, g, b] per class '
                           f'({len(names)}), got {got}')
    palette = np.array([_colour(c, f'{source}: palette[{i}]') for i, c in enumerate(palette)],
                       np.uint8)
  ignore = _byte(data.get('ignore_label', datasets.IGNORE_LABEL), f'{source}: "ignore_label"')
  label_format = data.get('label_format', 'ids')
  if label_format not in LABEL_FORMATS:
    raise UserInputError(f'{source}: "label_format" must be "ids" or "colours", got '
                         f'{label_format!r}')
  label_map = np.full(256, datasets.INVALID, np.int64)
  colours = None
  if label_format == 'ids':
    if 'ignore_colour' in data:
      raise UserInputError(f'{source}: "ignore_colour" is for "label_format": "colours"')
    raw_map = data.get('label_map')
    if raw_map is None:
      label_map[:len(names)] = np.arange(len(names))
    elif not isinstance(raw_map, dict) or not raw_map:
      raise UserInputError(f'{source}: "label_map" must map raw values to class ids, e.g. '
                           '{"7": 0, "3": 255}')
    else:
      for raw, train_id in raw_map.items():
        if not re.fullmatch(r'\d+', raw) or int(raw) > 255:
          raise UserInputError(f'{source}: label_map key {raw!r}: expected a raw value 0-255')
        if not isinstance(train_id, int) or isinstance(train_id, bool) or not (
            0 <= train_id < len(names) or train_id == datasets.IGNORE_LABEL):
          raise UserInputError(f'{source}: label_map[{raw!r}] = {train_id!r}: expected a class '
                               f'id 0-{len(names) - 1} or 255 (ignored)')
        label_map[int(raw)] = train_id
  else:
    if 'label_map' in data:
      raise UserInputError(f'{source}: "label_map" is for "label_format": "ids"; colour masks '
                           'are read through "palette"')
    if 'palette' not in data:
      raise UserInputError(f'{source}: "label_format": "colours" needs the "palette" its masks '
                           'are drawn in')
    colours = {tuple(int(c) for c in colour): i for i, colour in enumerate(palette)}
    if len(colours) != len(names):
      raise UserInputError(f'{source}: "palette" gives two classes the same colour; colour masks '
                           'need one colour per class')
    if 'ignore_colour' in data:
      ignore_colour = _colour(data['ignore_colour'], f'{source}: "ignore_colour"')
      if ignore_colour in colours:
        raise UserInputError(f'{source}: "ignore_colour" {list(ignore_colour)} is also a class '
                             'colour')
      colours[ignore_colour] = datasets.IGNORE_LABEL
    label_map[:len(names)] = np.arange(len(names))  # the converted records' own ids
  label_map[ignore] = datasets.IGNORE_LABEL
  spec = datasets.DatasetSpec(name=name, class_names=tuple(names), label_map=label_map,
                              palette=palette)
  return Parsed(spec, label_format, colours, _image_request(data.get('image'), source))


def read(path: str) -> Parsed:
  """`parse` of the file at `path`."""
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise UserInputError(f'{path}: missing; a dataset folder needs a dataset.json with "name" '
                         'and "class_names" (see docs/guide.md, "Your own data")') from None
  except (OSError, ValueError) as e:
    raise UserInputError(f'{path}: not readable JSON ({e})') from None
  return parse(data, path)


def document(spec: datasets.DatasetSpec) -> dict:
  """What a records directory's dataset.json and a workdir's model.json carry of a spec."""
  raw = np.flatnonzero(spec.label_map != datasets.INVALID)
  return {'class_names': list(spec.class_names), 'palette': np.asarray(spec.palette).tolist(),
          'label_map': {str(int(r)): int(spec.label_map[r]) for r in raw},
          'image': spec.image.to_dict()}


def from_document(data: dict, name: str, source: str) -> datasets.DatasetSpec:
  """The inverse of `document`."""
  try:
    label_map = np.full(256, datasets.INVALID, np.int64)
    for raw, train_id in data['label_map'].items():
      label_map[int(raw)] = int(train_id)
    return datasets.DatasetSpec(name=name, class_names=tuple(data['class_names']),
                                label_map=label_map,
                                palette=np.asarray(data['palette'], np.uint8),
                                image=datasets.ImageSpec.from_dict(data.get('image')))
  except (KeyError, TypeError, ValueError, IndexError) as e:
    raise UserInputError(f'{source}: unreadable dataset spec ({type(e).__name__}: {e})') from None


def spec_of(description: dict, source: str) -> datasets.DatasetSpec | None:
  """The spec a split summary or model.json names: its own document when it carries one (a
  folder dataset's: `document`), else the built-in dataset of that name; None when it names
  none."""
  name = description.get('dataset')
  if description.get('label_map') is not None:
    return from_document(description, name or 'dataset', source)
  if name in datasets.DATASETS:
    return datasets.get_spec(name, description.get('num_classes'))
  return None
