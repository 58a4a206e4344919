"""What a run's workdir says it holds: `model.json` (the retrain model) and the search's
`supernet.json`, written when a run starts and compared when it resumes, so a workdir is never
silently reused for another model; evaluation and export rebuild the model from `model.json`.
"""
from __future__ import annotations

import json
import os

from official.autodeeplab import files
from official.autodeeplab.errors import UserInputError
from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib

MODEL_FILE = 'model.json'


def model_description(genotype: genotype_lib.Genotype, filter_multiplier: int, num_classes: int,
                      dataset: str | None = None, spec=None) -> dict:
  """What `model.json` holds; `model_size` is S/M/L when F is one of theirs, else null. With the
  dataset's `spec`, its class names (compared on resume), and for a dataset that is not built in
  its whole spec (palette, label map: `spec_file.document`), so export and predict need no
  --dataset; and what its images are (`image`: channels, bit depth, value range), which every
  later stage normalises by."""
  size = {f: name for name, f in sizes.MODEL_SIZES.items()}.get(int(filter_multiplier))
  description = {'genotype': genotype.to_dict(), 'filter_multiplier': int(filter_multiplier),
                 'model_size': size, 'num_classes': int(num_classes), 'dataset': dataset}
  if spec is not None:
    from official.autodeeplab.data import datasets
    from official.autodeeplab.data import spec_file
    description.update({'class_names': list(spec.class_names)} if spec.name in datasets.DATASETS
                       else spec_file.document(spec))
    description['image'] = spec.image.to_dict()
  return description


def image_spec(description: dict):
  """The `datasets.ImageSpec` a model.json describes (8-bit RGB when written before images had
  a spec)."""
  from official.autodeeplab.data import datasets
  return datasets.ImageSpec.from_dict(description.get('image'))


def check_or_write_model(workdir: str, description: dict, write: bool = True) -> None:
  """Writes `workdir/model.json` (unless `write` is False), or checks that the one there
  describes the same model."""
  check_or_write_json(workdir, MODEL_FILE, description, write=write, **MODEL_CHECK)


def check_or_write_json(workdir: str, name: str, description: dict, write: bool = True,
                        what: str = 'configuration', keys=None, read=None,
                        optional=(), updated=()) -> None:
  """Writes `workdir/name` (unless `write` is False), or checks that the one there holds the same
  description: every key, or `keys` (those in `optional` only when both have them);
  `read(workdir)` reads (and validates) the existing one. Keys in `updated` are not compared but
  rewritten (when `write`) with this run's values: what the latest run used (its precision)."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    if not write:
      raise UserInputError(f'{workdir}: no {name}')
    files.write_json(path, description)
    return
  existing = read(workdir) if read is not None else read_json(workdir, name)
  for key in keys or sorted(set(existing) | set(description)):
    if key in optional and (key not in existing or key not in description):
      continue  # written by a newer version than the file's, or not known to the caller
    if existing.get(key) != description.get(key):
      raise UserInputError(
          f'{workdir}: holds a run of another {what} ({key} {existing.get(key)} in {path}, '
          f'asked for {description.get(key)}); use another --workdir or the same settings')
  changed = {key: description[key] for key in updated
             if key in description and existing.get(key) != description[key]}
  if write and changed:
    files.write_json(path, {**read_json(workdir, name), **changed})


def read_json(workdir: str, name: str, hint: str = '') -> dict:
  path = os.path.join(workdir, name)
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserInputError(f'{workdir}: no {name}' + (f'; {hint}' if hint else '')) from None
  except ValueError as e:
    raise UserInputError(f'{path}: not valid JSON ({e})') from None


def read_model(workdir: str) -> dict:
  """`workdir/model.json`, validated; its 'genotype' as written, and the parsed `Genotype` under
  'genotype_object' (not compared, not written)."""
  path = os.path.join(workdir, MODEL_FILE)
  try:
    with open(path) as f:
      data = json.load(f)
    data['genotype_object'] = genotype_lib.Genotype.from_dict(data['genotype'],
                                                              f'{path}: genotype')
    int(data['filter_multiplier']), int(data['num_classes'])
  except FileNotFoundError:
    raise UserInputError(f'{workdir}: no {MODEL_FILE}; is it a tools.train workdir?') from None
  except (ValueError, KeyError, TypeError) as e:
    if isinstance(e, UserInputError):
      raise
    raise UserInputError(
        f'{path}: unreadable model description ({type(e).__name__}: {e})') from None
  return data


# How `model.json` is compared when a run resumes (`check_or_write_json`'s keyword arguments).
MODEL_CHECK = {'what': 'model', 'keys': ('genotype', 'filter_multiplier', 'num_classes',
                                         'class_names', 'image'),
               'read': read_model, 'optional': ('class_names', 'image'),
               'updated': ('precision',)}
