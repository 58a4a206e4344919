"""Dataset specs against the official tables and the paper's facts."""
import dataclasses

import numpy as np
import pytest

from official.autodeeplab.data import datasets
from official.autodeeplab.errors import UserInputError


def test_cityscapes_label_table_is_the_official_one():
  from cityscapesscripts.helpers.labels import labels
  spec = datasets.get_spec('cityscapes')
  assert spec.num_classes == 19 and spec.splits == {'train': 2975, 'val': 500, 'test': 1525}
  for label in labels:
    raw = label.id if label.id >= 0 else 255
    expected = label.trainId if 0 <= label.trainId < 255 else 255
    assert spec.label_map[raw] == expected, label.name
  assert spec.class_names[0] == 'road' and spec.class_names[18] == 'bicycle'
  assert (spec.label_map[34:255] == datasets.INVALID).all()


def test_voc_and_ade20k():
  voc = datasets.get_spec('voc')
  assert voc.num_classes == 21 and voc.splits['train_aug'] == 10582
  assert voc.label_map[255] == 255 and voc.label_map[21] == datasets.INVALID
  np.testing.assert_array_equal(voc.palette[15], [192, 128, 128])  # person, VOC colour map
  ade = datasets.get_spec('ade20k')
  assert ade.num_classes == 150 and len(set(ade.class_names)) == 150
  assert ade.label_map[0] == 255 and ade.label_map[1] == 0 and ade.label_map[150] == 149
  assert ade.label_map[151] == datasets.INVALID
  assert ade.splits == {'train': 20210, 'val': 2000}


def test_map_labels_rejects_values_outside_the_table():
  spec = datasets.get_spec('voc')
  np.testing.assert_array_equal(datasets.map_labels(np.array([[0, 20, 255]]), spec, 'x.png'),
                                [[0, 20, 255]])
  with pytest.raises(UserInputError, match=r'x.png: label values \[30\]'):
    datasets.map_labels(np.array([[0, 30]]), spec, 'x.png')
  with pytest.raises(UserInputError, match='dataset=coco'):
    datasets.get_spec('coco')


@pytest.mark.parametrize('name', ['cityscapes', 'voc', 'ade20k', 'synthetic'])
def test_dataset_ids_read_back_to_the_same_train_ids(name):
  spec = datasets.synthetic_spec() if name == 'synthetic' else datasets.get_spec(name)
  ids = datasets.dataset_ids(spec)
  train_ids = np.arange(spec.num_classes)
  np.testing.assert_array_equal(datasets.map_labels(ids[train_ids], spec, 'x.png'), train_ids)
  if name == 'cityscapes':
    assert ids[0] == 7 and ids[18] == 33  # road, bicycle: their official labelIds
  if name == 'ade20k':
    np.testing.assert_array_equal(ids, train_ids + 1)


def test_dataset_ids_refuse_a_map_that_cannot_be_inverted():
  spec = datasets.synthetic_spec(3)
  label_map = spec.label_map.copy()
  label_map[7] = 1  # raw values 1 and 7 both become class 1
  merged = dataclasses.replace(spec, label_map=label_map)
  with pytest.raises(UserInputError, match=r'class 1 \(shape1\) comes from raw label values '
                                           r'\[1, 7\]'):
    datasets.dataset_ids(merged)
