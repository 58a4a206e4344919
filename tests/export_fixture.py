"""A tiny trained-looking segmenter shared by the export tests (tests/test_tflite.py,
tests/test_export_clients.py: one xdist group, so one worker builds it once): the `tiny`
fixture of conftest.py."""
import os

import numpy as np
import tensorflow as tf

from official.autodeeplab.data import convert
from official.autodeeplab.data import example
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.serving import export
from official.autodeeplab.utils import visualize
from tests.conftest import randomize_batch_norm

GENOTYPE = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(0, 1, 1))
SIZE = 65
NUM_CLASSES = 5


def build(root) -> dict:
  """A tiny segmenter with BN statistics away from their initial values (decisive predictions),
  its checkpoint, synthetic val records, and its SavedModel's class ids on those images."""
  tf.keras.utils.set_random_seed(3)
  model = segmenter.build_segmenter(GENOTYPE, NUM_CLASSES, filter_multiplier=2,
                                    drop_path_keep_prob=0.7)  # drop-path variables to freeze
  randomize_batch_norm(model)
  checkpoint = tf.train.Checkpoint(model=model).save(str(root / 'weights' / 'ckpt'))
  GENOTYPE.to_json(root / 'genotype.json')
  records = str(root / 'records')
  convert.convert('synthetic', records, 'val', 1, num_examples=6, image_size=SIZE,
                  num_classes=NUM_CLASSES, progress=False)
  files = [os.path.join(records, n) for n in os.listdir(records) if n.endswith('.tfrecord')]
  parsed = [example.parse(s) for s in tf.data.TFRecordDataset(files)]
  images = np.stack([p['image'].numpy() for p in parsed])
  labels = np.stack([p['label'].numpy() for p in parsed])
  saved_model = export.export(model, str(root / 'serving'))
  saved = tf.saved_model.load(saved_model)
  reference = saved.signatures[export.PREDICT_TENSOR](
      images=tf.constant(images, tf.float32))['semantic'].numpy()
  return {'root': root, 'model': model, 'checkpoint': checkpoint, 'records': records,
          'images': images, 'labels': labels, 'reference': reference,
          'saved_model': saved_model}


def write_inputs(tiny: dict, directory) -> None:
  """The predict tools' inputs: a.png, the first val image (the model's input size), and b.png,
  a random 90x130 image (letterboxed)."""
  directory.mkdir()
  visualize.save_png(tiny['images'][0], str(directory / 'a.png'))
  visualize.save_png(np.random.default_rng(2).integers(0, 256, [90, 130, 3], dtype=np.uint8),
                     str(directory / 'b.png'))
