r"""Input pipeline throughput on Cityscapes-sized data, as one JSON line.

  python benchmarks/input_pipeline.py [--num_images=16] [--batches=20] [--consumers]

Writes synthetic 1024x2048 PNG examples (and their half-resolution 512x1024 version, the search's
input) as TFRecords in a temporary directory, then measures images/s of the training pipeline
(parse, decode, random scale 0.5-2, crop/pad, flip, normalise, batch 2) with crop 769 on the full
images and crop 321 on the half-resolution ones, using every core. With --consumers it also times
one retrain step (Auto-DeepLab-S, crop 769, batch 2, forward + backward) and one search weight step
(L=12, F=8, crop 321, batch 2) on this machine: the rates the pipeline has to beat.
"""
import functools
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer('num_images', 16, 'Synthetic Cityscapes-sized images to write.')
flags.DEFINE_integer('batches', 20, 'Timed batches per configuration (after 3 warm-up).')
flags.DEFINE_bool('consumers', False, 'Also time a retrain step and a search step.')
FLAGS = flags.FLAGS


def _rate(dataset, batches, batch_size):
  iterator = iter(dataset)
  for _ in range(3):
    next(iterator)
  start = time.time()
  for _ in range(batches):
    next(iterator)
  return batches * batch_size / (time.time() - start)


def _retrain_step_rate():
  import tensorflow as tf
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 19, 'S')
  images, labels = tf.random.normal([2, 769, 769, 3]), tf.zeros([2, 769, 769], tf.int32)

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return tape.gradient(loss, model.trainable_variables)

  step(images, labels)
  start = time.time()
  step(images, labels)
  return 2 / (time.time() - start)


def _search_step_rate():
  import tensorflow as tf
  from official.autodeeplab.modeling import supernet
  from official.autodeeplab.training import distribute
  from official.autodeeplab.training import experiment
  from official.autodeeplab.training import search_task
  distribute.configure_graph_optimizer('off')
  task = search_task.SearchTask(experiment.Experiment.search(),
                                lambda: supernet.Supernet(19, recompute=True))
  images, labels = tf.random.normal([2, 321, 321, 3]), tf.zeros([2, 321, 321], tf.int32)
  task.weight_step(images, labels)
  start = time.time()
  task.weight_step(images, labels)
  return 2 / (time.time() - start)


def main(argv):
  del argv
  from official.autodeeplab.data import datasets
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.data import writer
  from official.autodeeplab.data.converters import base
  from official.autodeeplab.data.converters import synthetic
  import numpy as np
  from PIL import Image

  spec = datasets.get_spec('cityscapes')
  work = tempfile.mkdtemp()
  try:
    raw = os.path.join(work, 'raw')
    os.makedirs(raw)
    records = []
    # Label ids whose train id is t, so the labels go through the official mapping.
    ids = np.array([np.flatnonzero(spec.label_map == t)[0] for t in range(spec.num_classes)])
    for i in range(FLAGS.num_images):
      image, label = synthetic.make_one(i, 1024, 2048, 19)
      image_path, label_path = (os.path.join(raw, f'{i}.png'), os.path.join(raw, f'{i}_l.png'))
      Image.fromarray(image).save(image_path, compress_level=1)
      Image.fromarray(ids[label].astype(np.uint8)).save(label_path)
      records.append(base.Record(str(i), image_path, label_path))
    result = {'num_images': FLAGS.num_images, 'cpu_count': os.cpu_count()}
    for half, crop, key in ((False, 769, 'full_1024x2048_crop769'),
                            (True, 321, 'half_512x1024_crop321')):
      out = os.path.join(work, key)
      make = functools.partial(base.to_example, spec=spec, half_resolution=half)
      writer.write_split(functools.partial(writer.examples_of_shard, sources=records,
                                           make_example=make),
                         len(records), out, 'train', 4, spec.num_classes,
                         {'dataset': 'cityscapes'}, num_workers=os.cpu_count(), progress=False)
      files = input_pipeline.split_files(out, 'train')
      result[f'{key}_images_per_s'] = round(_rate(input_pipeline.from_tfrecords(
          files, 2, crop, shuffle_buffer=FLAGS.num_images), FLAGS.batches, 2), 2)
    if FLAGS.consumers:
      result['retrain_step_S_crop769_images_per_s'] = round(_retrain_step_rate(), 3)
      result['search_weight_step_crop321_images_per_s'] = round(_search_step_rate(), 3)
    print(json.dumps(result))
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  app.run(main)
