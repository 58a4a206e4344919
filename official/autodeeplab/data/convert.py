"""Dataset conversion: list a split's examples with the dataset's converter, write the shards."""
from __future__ import annotations

import functools

from official.autodeeplab.data import datasets
from official.autodeeplab.data import spec_file
from official.autodeeplab.data import writer
from official.autodeeplab.data.converters import ade20k
from official.autodeeplab.data.converters import base
from official.autodeeplab.data.converters import cityscapes
from official.autodeeplab.data.converters import folder
from official.autodeeplab.data.converters import synthetic
from official.autodeeplab.data.converters import tfds_source
from official.autodeeplab.data.converters import voc
from official.autodeeplab.errors import UserInputError

CONVERTERS = {'cityscapes': cityscapes, 'voc': voc, 'ade20k': ade20k}


def convert(dataset: str, output_dir: str, split: str, num_shards: int, data_dir: str = '',
            num_workers: int = 1, half_resolution: bool = False, sbd_dir: str | None = None,
            num_examples: int = synthetic.NUM_EXAMPLES, image_size: int = synthetic.IMAGE_SIZE,
            num_classes: int = synthetic.NUM_CLASSES, seed: int = 0,
            progress: bool = True, tfds_data_dir: str | None = None,
            val_fraction: float = 0.1, tfds: tfds_source.TfdsSource | None = None,
            dataset_spec: str | None = None) -> dict:
  """Converts one split of a dataset into sharded TFRecords; returns the split summary (with
  a `warning` when its images look wrong: (nearly) constant).

  For `synthetic`, `num_examples` images of `image_size` with `num_classes` classes are
  generated (seeded per split); the other datasets read `data_dir` (and `sbd_dir` for VOC
  train_aug); ADE20K can instead come from a prepared TFDS `scene_parse150` (`tfds_data_dir`).
  """
  warning = None
  if tfds_data_dir and dataset not in ('ade20k', 'tfds'):
    raise UserInputError(f'--tfds_data_dir is for --dataset=tfds or ade20k, not {dataset}')
  if dataset == 'synthetic':
    if num_examples < 1 or image_size < 8 or num_classes < 2:
      raise UserInputError(f'synthetic: num_examples={num_examples}, image_size={image_size}, '
                           f'num_classes={num_classes}: expected num_examples >= 1, '
                           'image_size >= 8 and num_classes >= 2')
    split_seed = seed * 1000 + sum(map(ord, split))
    spec = datasets.synthetic_spec(num_classes)
    sources = list(range(num_examples))
    make = functools.partial(synthetic.to_example, height=image_size, width=image_size,
                             num_classes=num_classes, seed=split_seed)
    manifest = {'dataset': 'synthetic', 'num_classes': num_classes, 'image_size': image_size,
                'seed': seed}
    shard_examples = functools.partial(writer.examples_of_shard, sources=sources,
                                       make_example=make)
    count = len(sources)
  elif dataset == 'folder':
    if not data_dir:
      raise UserInputError('--data_dir is required for --dataset=folder (the folder holding '
                           'dataset.json, images/ and labels/)')
    base.require_dir(data_dir, 'the dataset folder')
    loaded = folder.load(data_dir, val_fraction)
    if split not in loaded.splits:
      raise UserInputError(f'--split={split}: {data_dir} has the splits '
                           f'{", ".join(sorted(loaded.splits))}')
    if not loaded.splits[split]:
      raise UserInputError(f'--split={split}: {data_dir} has no image/mask pairs in it')
    spec, sources = loaded.spec, loaded.splits[split]
    warning = folder.constant_warning(loaded, split)
    manifest = {'dataset': spec.name, 'source': 'folder', 'half_resolution': half_resolution,
                **spec_file.document(spec)}
    shard_examples = functools.partial(writer.examples_of_shard, sources=sources,
                                       make_example=folder.make_example(loaded, half_resolution))
    count = len(sources)
  elif dataset == 'tfds' or (dataset == 'ade20k' and tfds_data_dir):
    if dataset == 'ade20k':  # a prepared scene_parse150: one case of the TFDS source
      base.require_dir(tfds_data_dir, 'TFDS data_dir')
      source, spec = tfds_source.scene_parse150(tfds_data_dir, split), datasets.get_spec(dataset)
      manifest = {'dataset': dataset, 'source': 'tfds'}
    else:
      source = tfds
      if source is None or not source.name:
        raise UserInputError('--dataset=tfds needs --tfds_name (and --image_key, --label_key)')
      spec = _tfds_spec(source, dataset_spec)
      manifest = {'dataset': spec.name, 'source': f'tfds:{source.name}',
                  **spec_file.document(spec)}
    shard_examples = functools.partial(tfds_source.shard_examples, source=source, spec=spec,
                                       prefix=f'{source.name}_{split}')
    count = tfds_source.num_examples(source)
  else:
    spec = datasets.get_spec(dataset)
    if not data_dir:
      raise UserInputError(f'--data_dir is required for --dataset={dataset}')
    base.require_dir(data_dir, f'{dataset} root')
    sources = CONVERTERS[dataset].list_records(data_dir, split, sbd_dir=sbd_dir)
    make = functools.partial(base.to_example, spec=spec, half_resolution=half_resolution)
    manifest = {'dataset': dataset, 'half_resolution': half_resolution}
    shard_examples = functools.partial(writer.examples_of_shard, sources=sources,
                                       make_example=make)
    count = len(sources)
  summary = writer.write_split(shard_examples, count, output_dir, split, num_shards,
                               spec.num_classes, manifest, num_workers, progress)
  return {**summary, 'warning': warning} if warning else summary


def _tfds_spec(source: tfds_source.TfdsSource, dataset_spec: str | None) -> datasets.DatasetSpec:
  """The spec of a TFDS source: its --dataset_spec file ("ids" masks), else the label feature's
  ClassLabel names (mask values are the class ids)."""
  if dataset_spec:
    parsed = spec_file.read(dataset_spec)
    spec, label_format = parsed.spec, parsed.label_format
    if label_format != 'ids':
      raise UserInputError(f'{dataset_spec}: TFDS masks are class values: "label_format" must be '
                           '"ids"')
    return spec
  names = tfds_source.class_names(source)
  if not names:
    raise UserInputError(f'--label_key={source.label_key}: {source.name} gives no class names '
                         'for it; pass --dataset_spec=dataset.json (class_names, and a label_map '
                         'when the mask values are not 0..N-1)')
  return spec_file.parse({'name': source.name, 'class_names': names}, f'TFDS {source.name}')[0]
