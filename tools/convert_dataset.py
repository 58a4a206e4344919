r"""Converts a dataset split into sharded TFRecords (Google DeepLab's feature keys).

  python -m tools.convert_dataset --dataset=cityscapes --data_dir=/data/cityscapes \
      --output_dir=/data/tfrecords/cityscapes --split=train --num_shards=10 [--num_workers=2] \
      [--half_resolution]
  python -m tools.convert_dataset --dataset=voc --data_dir=/data/VOCdevkit/VOC2012 \
      --sbd_dir=/data/benchmark_RELEASE/dataset --split=train_aug --output_dir=... --num_shards=10
  python -m tools.convert_dataset --dataset=ade20k --data_dir=/data/ADEChallengeData2016 \
      --split=train --output_dir=... --num_shards=10
  python -m tools.convert_dataset --dataset=ade20k --tfds_data_dir=~/tensorflow_datasets \
      --split=val --output_dir=...
  python -m tools.convert_dataset --dataset=synthetic --output_dir=... --split=train \
      --num_examples=64 --image_size=129
  python -m tools.convert_dataset --dataset=folder --data_dir=my_data --output_dir=... \
      --split=train [--val_fraction=0.1]        # your own: dataset.json, images/, labels/
  python -m tools.convert_dataset --dataset=tfds --tfds_name=oxford_iiit_pet \
      --label_key=segmentation_mask --dataset_spec=pets.json --tfds_split=test --split=val \
      --output_dir=...                          # any prepared TFDS segmentation dataset

Writes {output_dir}/{split}-{i:05d}-of-{n:05d}.tfrecord and {split}-summary.json; rerunning the
same command after an interruption finishes the job.
"""
from __future__ import annotations

import json
import sys

from absl import flags

from . import common

FLAGS = flags.FLAGS
flags.DEFINE_enum('dataset', None, ['cityscapes', 'voc', 'ade20k', 'synthetic', 'folder', 'tfds'],
                  'Dataset; folder: your own (dataset.json, images/, labels/ in --data_dir); '
                  'tfds: a prepared TFDS segmentation dataset (--tfds_name).')
flags.DEFINE_string('data_dir', '', 'Root of the raw dataset tree.')
flags.DEFINE_float('val_fraction', 0.1, '--dataset=folder, flat without list files: the share of '
                   'stems (by SHA-1) in val.')
flags.DEFINE_string('output_dir', None, 'Where the shards go.')
flags.DEFINE_string('split', 'train', 'Split to convert.')
flags.DEFINE_integer('num_shards', 4, 'Number of output shards.')
flags.DEFINE_integer('num_workers', 1, 'Parallel worker processes.')
flags.DEFINE_bool('half_resolution', False, 'Halve images and labels (Cityscapes search input).')
flags.DEFINE_string('sbd_dir', None, 'VOC train_aug: SBD benchmark_RELEASE/dataset directory.')
flags.DEFINE_string('tfds_data_dir', None, 'The TFDS data_dir of --dataset=tfds; for ADE20K: read '
                    'a prepared scene_parse150 from it instead of --data_dir (needs '
                    'tensorflow-datasets).')
flags.DEFINE_string('tfds_name', None, '--dataset=tfds: the TFDS dataset, e.g. oxford_iiit_pet.')
flags.DEFINE_string('image_key', 'image', '--dataset=tfds: the feature holding the image.')
flags.DEFINE_string('label_key', 'segmentation_mask', '--dataset=tfds: the feature holding the '
                    'mask.')
flags.DEFINE_string('tfds_split', None, '--dataset=tfds: the TFDS split to read (default: '
                    '--split), e.g. test for a dataset without a validation split.')
flags.DEFINE_string('dataset_spec', None, '--dataset=tfds: a dataset.json with the class names '
                    '(and label_map); default: the label feature\'s ClassLabel names.')
common.define_flags('num_examples', 'image_size', 'num_classes', 'seed')  # --dataset=synthetic
flags.mark_flags_as_required(['dataset', 'output_dir'])


def main(argv):
  del argv
  if FLAGS.num_workers < 1:
    raise common.UserInputError(f'--num_workers={FLAGS.num_workers}: must be positive')
  from official.autodeeplab.data import convert
  from official.autodeeplab.data.converters import tfds_source
  tfds = (tfds_source.TfdsSource(FLAGS.tfds_name, FLAGS.image_key, FLAGS.label_key,
                                 FLAGS.tfds_split or FLAGS.split, FLAGS.tfds_data_dir)
          if FLAGS.dataset == 'tfds' and FLAGS.tfds_name else None)
  summary = convert.convert(
      FLAGS.dataset, FLAGS.output_dir, FLAGS.split, FLAGS.num_shards, FLAGS.data_dir,
      FLAGS.num_workers, FLAGS.half_resolution, FLAGS.sbd_dir, FLAGS.num_examples,
      FLAGS.image_size, FLAGS.num_classes, FLAGS.seed, tfds_data_dir=FLAGS.tfds_data_dir,
      val_fraction=FLAGS.val_fraction, tfds=tfds, dataset_spec=FLAGS.dataset_spec)
  print(json.dumps({k: v for k, v in summary.items() if k not in ('class_pixels', 'warning')}))
  if summary.get('warning'):
    print(f'warning: {summary["warning"]}', file=sys.stderr)


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
