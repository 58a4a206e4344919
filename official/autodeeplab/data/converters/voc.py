"""PASCAL VOC 2012 and its SBD-augmented training set.

  {data_dir}/JPEGImages/*.jpg
  {data_dir}/SegmentationClass/*.png              palette PNGs: the indices are the labels
  {data_dir}/ImageSets/Segmentation/{train,val,trainval}.txt
  {sbd_dir}/cls/*.mat, {sbd_dir}/{train,val}.txt   SBD ('benchmark_RELEASE/dataset'), for train_aug

Splits train, val, trainval come from VOC's lists. train_aug = VOC train + SBD train + SBD val
minus VOC val (10,582 images with the full data); an image with a VOC annotation uses it, the
others use SBD's GTcls.Segmentation.
"""
from __future__ import annotations

import os

from official.autodeeplab.data.converters import base
from official.autodeeplab.errors import UserInputError

SPLITS = ('train', 'val', 'trainval', 'train_aug')


def _read_list(path: str) -> list[str]:
  if not os.path.isfile(path):
    raise UserInputError(f'{path}: missing image list')
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def _image(data_dir: str, name: str) -> str:
  path = os.path.join(data_dir, 'JPEGImages', name + '.jpg')
  return path


def list_records(data_dir: str, split: str, sbd_dir: str | None = None,
                 **unused) -> list[base.Record]:
  if split not in SPLITS:
    raise UserInputError(f'--split={split}: VOC splits are {", ".join(SPLITS)}')
  base.require_dir(os.path.join(data_dir, 'JPEGImages'), 'VOC images')
  label_dir = base.require_dir(os.path.join(data_dir, 'SegmentationClass'), 'VOC labels')
  lists = os.path.join(data_dir, 'ImageSets', 'Segmentation')
  voc_label = lambda name: os.path.join(label_dir, name + '.png')
  if split != 'train_aug':
    names = _read_list(os.path.join(lists, f'{split}.txt'))
    records = [base.Record(n, _image(data_dir, n), voc_label(n)) for n in names]
  else:
    if not sbd_dir:
      raise UserInputError('--split=train_aug needs --sbd_dir (SBD benchmark_RELEASE/dataset)')
    base.require_dir(os.path.join(sbd_dir, 'cls'), 'SBD annotations')
    voc_train = _read_list(os.path.join(lists, 'train.txt'))
    voc_val = set(_read_list(os.path.join(lists, 'val.txt')))
    sbd = _read_list(os.path.join(sbd_dir, 'train.txt')) + _read_list(
        os.path.join(sbd_dir, 'val.txt'))
    names = sorted((set(voc_train) | set(sbd)) - voc_val)
    voc_annotated = set(voc_train)
    records = [
        base.Record(n, _image(data_dir, n), voc_label(n)) if n in voc_annotated else
        base.Record(n, _image(data_dir, n), os.path.join(sbd_dir, 'cls', n + '.mat'), 'mat')
        for n in names]
  for record in records:
    if not os.path.isfile(record.image_path):
      raise UserInputError(f'{record.image_path}: listed in the {split} split but missing')
    if not os.path.isfile(record.label_path):
      raise UserInputError(f'{record.image_path}: image has no label file ({record.label_path})')
  return records
