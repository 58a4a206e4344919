"""A user's own dataset (converters/folder.py, data/spec_file.py): each layout and label format
converted and read back pixel by pixel; the spec travels with the records; every bad input is one
line naming the file or field."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from official.autodeeplab.data import convert
from official.autodeeplab.data import input_pipeline
from official.autodeeplab.data.converters import folder
from official.autodeeplab.errors import UserInputError
from tests import data_trees
from tests.conftest import assert_bad_input
from tests.data_trees import read_back


def _convert(data_dir, output_dir, split, **options):
  return convert.convert('folder', str(output_dir), split, 2, data_dir=str(data_dir),
                         progress=False, **options)


@pytest.mark.parametrize('layout,label_format,label_map', [
    ('subfolders', 'ids', None), ('lists', 'colours', None),
    ('flat', 'ids', {str(i + 10): i for i in range(4)})])
def test_layouts_and_label_formats_round_trip(tmp_path, layout, label_format, label_map):
  ids = data_trees.folder(tmp_path / 'raw', layout, label_format, count=8, label_map=label_map)
  expected_splits = {'train': sorted(s for s in ids if int(s[-3:]) % 4 != 3),
                     'val': sorted(s for s in ids if int(s[-3:]) % 4 == 3)}
  if layout == 'flat':
    expected_splits = {split: sorted(s for s in ids if folder.in_val(s, 0.3) == (split == 'val'))
                       for split in ('train', 'val')}
  for split in ('train', 'val'):
    summary = _convert(tmp_path / 'raw', tmp_path / 'out', split, val_fraction=0.3)
    assert summary['class_names'] == data_trees.FOLDER_CLASSES
    back = read_back(str(tmp_path / 'out'), split)
    assert sorted(back) == expected_splits[split]
    for stem, (image, label) in back.items():
      np.testing.assert_array_equal(label, ids[stem])
      assert image.shape == (*ids[stem].shape, 3)
  spec = input_pipeline.dataset_spec(str(tmp_path / 'out'), 'train')
  assert spec.name == 'streets' and list(spec.class_names) == data_trees.FOLDER_CLASSES
  assert spec.palette.tolist() == data_trees.FOLDER_PALETTE
  with open(tmp_path / 'out' / 'dataset.json') as f:
    assert json.load(f)['class_names'] == data_trees.FOLDER_CLASSES


def test_ignore_values_grey_and_rgba_images(tmp_path):
  root = tmp_path / 'raw'
  data_trees.folder(root, 'subfolders', count=4)
  label = np.array(Image.open(root / 'labels' / 'train' / 'img_000.png'))
  label[:3] = 7  # the spec's raw ignore value
  Image.fromarray(label).save(root / 'labels' / 'train' / 'img_000.png')
  spec = json.loads((root / 'dataset.json').read_text())
  (root / 'dataset.json').write_text(json.dumps({**spec, 'ignore_label': 7}))
  rgb = np.array(Image.open(root / 'images' / 'train' / 'img_000.png'))
  Image.fromarray(rgb[..., 0]).save(root / 'images' / 'train' / 'img_000.png')  # grey
  Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(
      root / 'images' / 'train' / 'img_002.png')  # RGBA
  _convert(root, tmp_path / 'out', 'train')
  back = read_back(str(tmp_path / 'out'), 'train')
  image, label_back = back['img_000']
  assert (label_back[:3] == 255).all() and (label_back[3:] < 4).all()
  np.testing.assert_array_equal(image[..., 0], image[..., 1])  # grey replicated
  np.testing.assert_array_equal(back['img_002'][0], rgb)  # alpha dropped


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def _bad(root):
  """Changes that make the folder invalid -> what the one error line says."""
  masks, images = root / 'labels' / 'train', root / 'images' / 'train'

  def spec_with(**changes):
    def change():
      spec = json.loads((root / 'dataset.json').read_text())
      _write(root / 'dataset.json', json.dumps({**spec, **changes}))
    return change

  def mask_values(value):
    def change():
      label = np.array(Image.open(masks / 'img_000.png'))
      label[:2, :5] = value
      Image.fromarray(label).save(masks / 'img_000.png')
    return change

  return {
      'no dataset.json': (lambda: os.remove(root / 'dataset.json'), 'dataset.json: missing'),
      'no class_names': (spec_with(class_names=None), '"class_names" must list'),
      'duplicate names': (spec_with(class_names=['a', 'b', 'a', 'c']), "names 'a' twice"),
      'short palette': (spec_with(palette=[[0, 0, 0]]), '"palette" must hold one [r, g, b] per '
                        'class (4), got 1'),
      'palette value': (spec_with(palette=[[0, 0, 0], [1, 2, 3], [4, 5, 256], [7, 8, 9]]),
                        'palette[2]: expected [r, g, b] with integers 0-255'),
      'label format': (spec_with(label_format='rgb'), '"label_format" must be "ids" or '
                       '"colours"'),
      'image without mask': (lambda: os.remove(masks / 'img_000.png'),
                             'img_000.png: image has no mask img_000.png'),
      'mask without image': (lambda: os.remove(images / 'img_000.png'),
                             'img_000.png: mask has no image'),
      'stem twice': (lambda: Image.open(images / 'img_000.png').save(images / 'img_000.jpg'),
                     "image stem 'img_000' appears twice"),
      'sizes differ': (lambda: Image.fromarray(np.zeros([8, 8], np.uint8)).save(
          masks / 'img_002.png'), 'img_002.png: mask is 8x8 but image'),
      'value': (mask_values(9), 'img_000.png: value 9 (10 pixels) is no class id, not in '
                'label_map and not the ignore label'),
      'jpeg mask': (lambda: Image.open(masks / 'img_000.png').save(masks / 'img_000.jpg'),
                    'img_000.jpg: a JPEG mask'),
      '16-bit mask': (lambda: Image.fromarray(np.zeros([40, 48], np.uint16)).save(
          masks / 'img_000.png'), 'a I;16 (16/32-bit) mask'),
      'rgb mask': (lambda: Image.fromarray(np.zeros([40, 48, 3], np.uint8)).save(
          masks / 'img_000.png'), 'a RGB mask under "label_format": "ids"'),
      'empty split': (lambda: [os.remove(p) for d in (images.parent / 'val', masks.parent / 'val')
                               for p in d.iterdir()], "--split=val: "),
  }


@pytest.mark.parametrize('name', list(_bad(__import__('pathlib').Path('/nonexistent'))))
def test_bad_folder_is_one_line_and_writes_nothing(tmp_path, name):
  root = tmp_path / 'raw'
  data_trees.folder(root, 'subfolders', count=4)
  change, message = _bad(root)[name]
  change()
  split = 'val' if name == 'empty split' else 'train'
  with pytest.raises(UserInputError) as raised:
    _convert(root, tmp_path / 'out', split)
  assert message in str(raised.value) and '\n' not in str(raised.value), str(raised.value)
  assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').glob('*.tfrecord'))


def test_colour_and_list_errors(tmp_path):
  root = tmp_path / 'raw'
  data_trees.folder(root, 'lists', 'colours', count=4)
  with open(root / 'val.txt', 'a') as f:
    f.write('img_999\n')
  with pytest.raises(UserInputError, match=r"val.txt: line 2: stem 'img_999' has no image"):
    _convert(root, tmp_path / 'out', 'train')
  (root / 'val.txt').write_text('img_003\n')
  label = np.array(Image.open(root / 'labels' / 'img_001.png'))
  label[0, :3] = (1, 2, 3)
  Image.fromarray(label).save(root / 'labels' / 'img_001.png')
  # The bad mask is in train; converting val is refused too: every pair is checked first.
  with pytest.raises(UserInputError, match=r'img_001.png: colour \[1, 2, 3\] \(3 pixels\) is '
                                           'not in the palette of dataset.json'):
    _convert(root, tmp_path / 'out', 'val')
  with pytest.raises(UserInputError, match=r'--val_fraction=1.5: expected a fraction in \(0, 1\)'):
    _convert(root, tmp_path / 'out', 'val', val_fraction=1.5)


def test_another_spec_in_the_output_dir_is_refused(tmp_path):
  data_trees.folder(tmp_path / 'a', 'subfolders', count=4)
  _convert(tmp_path / 'a', tmp_path / 'out', 'train')
  data_trees.folder(tmp_path / 'b', 'subfolders', count=4, spec={
      'name': 'streets', 'class_names': ['x', 'y', 'z', 'w']})
  with pytest.raises(UserInputError, match="already holds another dataset .'streets'; its "
                                           "dataset.json differs in 'class_names'"):
    _convert(tmp_path / 'b', tmp_path / 'out', 'val')


def test_the_tool_converts_a_folder(tool, tmp_path):
  data_trees.folder(tmp_path / 'raw', 'flat', count=6)
  result = tool('convert_dataset', '--dataset=folder', f'--data_dir={tmp_path / "raw"}',
                f'--output_dir={tmp_path / "out"}', '--split=train', '--val_fraction=0.5')
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout.strip().splitlines()[-1])['dataset'] == 'streets'
  result = tool('convert_dataset', '--dataset=folder', f'--data_dir={tmp_path / "nope"}',
                f'--output_dir={tmp_path / "out"}', '--split=train')
  assert_bad_input(result, 'nope: missing directory')


def test_lengths_in_epochs():
  from official.autodeeplab.training import experiment
  search = experiment.with_epochs(experiment.SearchConfig(num_epochs=2, arch_start_epoch=1), 25, 2)
  assert (search.total_steps, search.arch_start_step) == (25, 13)
  train = experiment.with_epochs(experiment.TrainConfig(num_epochs=3), 10, 4)
  assert train.total_steps == 8
  assert experiment.with_epochs(experiment.TrainConfig(total_steps=7), 10, 4).total_steps == 7
  with pytest.raises(UserInputError, match='num_epochs=-1'):
    experiment.with_epochs(experiment.TrainConfig(num_epochs=-1), 10, 4)


def test_model_json_of_a_built_in_dataset_names_it():
  """model.json keeps a built-in dataset's class names (compared on resume) and resolves it by
  name; a folder dataset's carries the whole spec."""
  from official.autodeeplab.data import datasets
  from official.autodeeplab.data import spec_file
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.training import run_description
  built_in = datasets.synthetic_spec(5)
  description = run_description.model_description(PAPER_GENOTYPE, 4, 5, 'synthetic', built_in)
  assert description['class_names'] == list(built_in.class_names)
  assert 'label_map' not in description
  assert spec_file.spec_of(description, 'model.json').class_names == built_in.class_names
  own = spec_file.parse({'name': 'streets', 'class_names': data_trees.FOLDER_CLASSES},
                        'x').spec
  description = run_description.model_description(PAPER_GENOTYPE, 4, 4, 'streets', own)
  resolved = spec_file.spec_of(description, 'model.json')
  assert resolved.class_names == own.class_names and resolved.name == 'streets'
  np.testing.assert_array_equal(resolved.palette, own.palette)


def _mock_tfds(tfds, expected_split, examples, label_key='segmentation_mask'):
  import tensorflow as tf

  def as_dataset(self, split, *args, **kwargs):
    assert split == expected_split
    return tf.data.Dataset.from_generator(
        lambda: ({'image': i, label_key: m, 'file_name': b'x'} for i, m in examples),
        output_signature={'image': tf.TensorSpec([None, None, 3], tf.uint8),
                          label_key: tf.TensorSpec([None, None, 1], tf.uint8),
                          'file_name': tf.TensorSpec([], tf.string)})
  return tfds.testing.mock_data(as_dataset_fn=as_dataset)


def test_a_tfds_dataset_with_a_spec_file(tool, tmp_path):
  """oxford_iiit_pet's masks hold 1 (pet), 2 (background), 3 (border): a label_map makes them
  classes, the border ignored; --tfds_split=test becomes the records' val."""
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(1)
  examples = [(rng.integers(0, 255, [h, w, 3], dtype=np.uint8),
               rng.integers(1, 4, [h, w, 1], dtype=np.uint8)) for h, w in ((12, 16), (9, 7))]
  spec = tmp_path / 'pets.json'
  spec.write_text(json.dumps({'name': 'pets', 'class_names': ['pet', 'background'],
                              'label_map': {'1': 0, '2': 1, '3': 255}}))
  from official.autodeeplab.data.converters import tfds_source
  source = tfds_source.TfdsSource('oxford_iiit_pet', 'image', 'segmentation_mask', 'test',
                                  str(tmp_path / 'tfds'))
  with _mock_tfds(tfds, 'test', examples):
    summary = convert.convert('tfds', str(tmp_path / 'out'), 'val', 2, progress=False,
                              tfds=source, dataset_spec=str(spec))
    with pytest.raises(UserInputError, match=r"--label_key=mask: oxford_iiit_pet has the "
                                             r"features \['file_name', 'image', "):
      convert.convert('tfds', str(tmp_path / 'out2'), 'val', 1, progress=False,
                      tfds=tfds_source.TfdsSource('oxford_iiit_pet', 'image', 'mask', 'test'),
                      dataset_spec=str(spec))
  assert summary['num_examples'] == 2 and summary['class_names'] == ['pet', 'background']
  back = read_back(str(tmp_path / 'out'), 'val')
  for number, (image, mask) in enumerate(examples):
    got_image, got_label = back[f'oxford_iiit_pet_val_{number:06d}']
    np.testing.assert_array_equal(got_image, image)
    np.testing.assert_array_equal(got_label, np.array([255, 0, 1, 255])[mask[..., 0]])
  assert input_pipeline.dataset_spec(str(tmp_path / 'out'), 'val').name == 'pets'
  result = tool('convert_dataset', '--dataset=tfds', f'--output_dir={tmp_path / "x"}',
                '--tfds_name=oxford_iiit_pet', f'--tfds_data_dir={tmp_path / "none"}',
                f'--dataset_spec={spec}')
  assert_bad_input(result, "no prepared TFDS oxford_iiit_pet split 'train'")


def test_a_tfds_label_with_class_names_needs_no_spec_file(tmp_path):
  """Without --dataset_spec, the label feature's ClassLabel names are the classes."""
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(2)
  examples = [(rng.integers(0, 255, [8, 8, 3], dtype=np.uint8),
               rng.integers(0, 37, [8, 8, 1], dtype=np.uint8))]
  from official.autodeeplab.data.converters import tfds_source
  source = tfds_source.TfdsSource('oxford_iiit_pet', 'image', 'label', 'train')
  with _mock_tfds(tfds, 'train', examples, label_key='label'):
    summary = convert.convert('tfds', str(tmp_path / 'out'), 'train', 1, progress=False,
                              tfds=source)
    source = tfds_source.TfdsSource('oxford_iiit_pet', 'image', 'segmentation_mask', 'train')
    with pytest.raises(UserInputError, match='gives no class names for it; pass --dataset_spec'):
      convert.convert('tfds', str(tmp_path / 'out2'), 'train', 1, progress=False, tfds=source)
  assert len(summary['class_names']) == 37 and summary['class_names'][0] == 'Abyssinian'


def test_a_workdir_of_another_class_list_is_refused_on_resume(tmp_path):
  from official.autodeeplab.data import spec_file
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.training import run_description
  streets = spec_file.parse({'name': 'streets', 'class_names': ['a', 'b', 'c']}, 'x').spec
  other = spec_file.parse({'name': 'streets', 'class_names': ['a', 'b', 'd']}, 'y').spec
  run_description.check_or_write_model(str(tmp_path), run_description.model_description(
      PAPER_GENOTYPE, 4, 3, 'streets', streets))
  run_description.check_or_write_model(str(tmp_path), run_description.model_description(
      PAPER_GENOTYPE, 4, 3, 'streets', streets))  # the same: resumes
  with pytest.raises(UserInputError, match=r"holds a run of another model \(class_names"):
    run_description.check_or_write_model(str(tmp_path), run_description.model_description(
        PAPER_GENOTYPE, 4, 3, 'streets', other))
  old = run_description.model_description(PAPER_GENOTYPE, 4, 3, 'streets')  # before class names
  run_description.check_or_write_model(str(tmp_path), old)  # compared only when both have them
