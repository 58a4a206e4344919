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
from official.autodeeplab.data.converters import voc
from official.autodeeplab.errors import UserInputError

CONVERTERS = {'cityscapes': cityscapes, 'voc': voc, 'ade20k': ade20k}


def convert(dataset: str, output_dir: str, split: str, num_shards: int, data_dir: str = '',
            num_workers: int = 1, half_resolution: bool = False, sbd_dir: str | None = None,
            num_examples: int = synthetic.NUM_EXAMPLES, image_size: int = synthetic.IMAGE_SIZE,
            num_classes: int = synthetic.NUM_CLASSES, seed: int = 0,
            progress: bool = True, tfds_data_dir: str | None = None,
            val_fraction: float = 0.1) -> dict:
  """Converts one split of a dataset into sharded TFRecords; returns the split summary.

  For `synthetic`, `num_examples` images of `image_size` with `num_classes` classes are
  generated (seeded per split); the other datasets read `data_dir` (and `sbd_dir` for VOC
  train_aug); ADE20K can instead come from a prepared TFDS `scene_parse150` (`tfds_data_dir`).
  """
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
    manifest = {'dataset': spec.name, 'source': 'folder', 'half_resolution': half_resolution,
                **spec_file.document(spec)}
    shard_examples = functools.partial(writer.examples_of_shard, sources=sources,
                                       make_example=folder.make_example(loaded, half_resolution))
    count = len(sources)
  elif tfds_data_dir:
    if dataset != 'ade20k':
      raise UserInputError(f'--tfds_data_dir is for --dataset=ade20k, not {dataset}')
    base.require_dir(tfds_data_dir, 'TFDS data_dir')
    spec = datasets.get_spec(dataset)
    manifest = {'dataset': dataset, 'source': 'tfds'}
    shard_examples = functools.partial(ade20k.tfds_shard_examples, tfds_data_dir=tfds_data_dir,
                                       split=split)
    count = ade20k.tfds_num_examples(tfds_data_dir, split)
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
  return writer.write_split(shard_examples, count, output_dir, split, num_shards,
                            spec.num_classes, manifest, num_workers, progress)
