r"""Evaluates a training workdir's checkpoint on a converted split: mIoU, pixel accuracy, per class.

  python -m tools.evaluate --workdir=runs/cityscapes_s --tfrecord_dir=/data/records/cityscapes \
      [--split=val] [--checkpoint=WORKDIR/checkpoints/ckpt-N] \
      [--scales=0.5,0.75,1,1.25,1.5,1.75 --flip] [--save_predictions=DIR] [--max_images=N] \
      [--gin_file=experiments/retrain/voc.gin]

Inference runs on whole images at their full resolution (optionally multi-scale and flipped,
probabilities averaged). Writes `eval.json` in the workdir (miou, pixel_accuracy, per_class_iou by
class name (null for a class absent from labels and predictions), num_images, scales, flip,
checkpoint, confusion_matrix: rows = ground truth, columns = prediction, pixel counts, ignored
pixels excluded) and `confusion.png` (row-normalised), and prints a per-class table and the most
confused pairs. With --save_predictions, for each image
`{name}.png` (train ids), `{name}_colour.png` (the dataset's palette) and `{name}_overlay.png`;
with --prediction_ids=dataset only `{name}.png`, in the dataset's own label ids (Cityscapes:
labelIds), named after the image as the records hold it: what a benchmark server scores.
"""
from __future__ import annotations

import math
import os
import re

from absl import flags

from official.autodeeplab import launch
from . import common

FLAGS = flags.FLAGS
common.define_gin_flags()
common.define_flags('workdir', 'checkpoint', 'tfrecord_dir', 'strategy', 'precision', split='val',
                    batch_size=1)
# --scales / --flip default to the gin file's inference_options (else 1, no flip).
common.define_flags('scales', 'flip')
flags.DEFINE_string('save_predictions', None, 'Directory for predicted masks and overlays.')
flags.DEFINE_integer('max_images', None, 'Evaluate only the first N images.')
common.define_flags('prediction_ids')
flags.mark_flags_as_required(['workdir', 'tfrecord_dir'])


def _scales() -> list[str]:
  """--scales / --flip, when given, as gin bindings over the gin file's inference_options."""
  bindings = []
  if FLAGS.scales is not None:
    bindings.append(f'inference_options.scales = {common.parse_scales(FLAGS.scales)}')
  if FLAGS.flip is not None:
    bindings.append(f'inference_options.flip = {FLAGS.flip}')
  return bindings


def _prediction_writer(directory: str, palette, dataset_ids=None):
  """on_batch callback writing each image's train ids, colours and overlay; with `dataset_ids`,
  only `{name}.png` in the dataset's own label values (a benchmark server's input)."""
  import numpy as np
  from official.autodeeplab.utils import visualize
  os.makedirs(directory, exist_ok=True)

  def write(batch, predictions, confidence):
    del confidence
    for i in range(len(predictions)):
      height, width = int(batch['height'][i]), int(batch['width'][i])
      name = re.sub(r'[^\w.-]', '_', batch['filename'][i].decode() or f'image_{i}')
      ids = predictions[i, :height, :width].astype(np.uint8)
      if dataset_ids is not None:
        visualize.save_png(dataset_ids[ids].astype(np.uint8), os.path.join(directory, f'{name}.png'))
        continue
      image = visualize.display_rgb(batch['image'][i, :height, :width])
      colours = visualize.colorize(ids, palette)
      visualize.save_png(ids, os.path.join(directory, f'{name}.png'))
      visualize.save_png(colours, os.path.join(directory, f'{name}_colour.png'))
      visualize.save_png(visualize.overlay(image, colours),
                         os.path.join(directory, f'{name}_overlay.png'))
  return write


def main(argv):
  del argv
  if FLAGS.batch_size < 1 or (FLAGS.max_images is not None and FLAGS.max_images < 1):
    raise common.UserInputError('--batch_size and --max_images must be positive')
  # With --save_predictions it writes the masks too: one writer per workdir.
  process = launch.start('inference', workdir=FLAGS.workdir, lock=bool(FLAGS.save_predictions),
                         strategy=FLAGS.strategy, gin_files=FLAGS.gin_file,
                         gin_bindings=[*FLAGS.gin_bindings, *_scales()],
                         precision=FLAGS.precision)
  runtime, strategy = process.runtime, process.strategy
  from official.autodeeplab import files
  from official.autodeeplab.data import datasets
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.training import checkpoints
  from official.autodeeplab.training import configs
  from official.autodeeplab.training import evaluation
  from official.autodeeplab.utils import visualize
  options = configs.inference_options()
  shards = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
  spec = input_pipeline.dataset_spec(FLAGS.tfrecord_dir, FLAGS.split)
  with strategy.scope():
    model, description, checkpoint = checkpoints.load_trained_model(
        FLAGS.workdir, FLAGS.checkpoint, float32_batch_norm=runtime.float32_batch_norm)
  if description['num_classes'] != spec.num_classes:
    raise common.UserInputError(
        f'{FLAGS.tfrecord_dir}: split {FLAGS.split!r} has {spec.num_classes} classes, the model '
        f'in {FLAGS.workdir} predicts {description["num_classes"]}')
  from official.autodeeplab.training import run_description
  model_image = run_description.image_spec(description)
  if model_image != spec.image:
    raise common.UserInputError(
        f'{FLAGS.tfrecord_dir}: split {FLAGS.split!r} holds images of {spec.image.to_dict()}, the '
        f'model in {FLAGS.workdir} was trained on {model_image.to_dict()} (its model.json)')
  trained_on = description.get('class_names')
  if trained_on is not None and tuple(trained_on) != spec.class_names:
    mismatch = next(i for i, (a, b) in enumerate(zip(trained_on, spec.class_names)) if a != b)
    raise common.UserInputError(
        f'{FLAGS.tfrecord_dir}: split {FLAGS.split!r} has other classes than the model in '
        f'{FLAGS.workdir} was trained on (class {mismatch}: {spec.class_names[mismatch]!r} '
        f'there, {trained_on[mismatch]!r} in its model.json)')
  evaluator = evaluation.Evaluator(model, spec.num_classes, options['scales'], options['flip'],
                                   strategy)
  on_batch = (_prediction_writer(FLAGS.save_predictions, visualize.label_palette(spec.palette),
                                 datasets.dataset_ids(spec) if FLAGS.prediction_ids == 'dataset'
                                 else None)
              if FLAGS.save_predictions else None)
  max_batches = None
  if FLAGS.max_images is not None:
    max_batches = -(-FLAGS.max_images // FLAGS.batch_size)
  print(f'[evaluate] {checkpoint} on {spec.name} {FLAGS.split} at scales '
        f'{list(options["scales"])}{" + flip" if options["flip"] else ""}, '
        f'{runtime.describe()}', flush=True)
  dataset = input_pipeline.for_evaluation(shards, FLAGS.batch_size, spec.image)
  result = evaluator.run(dataset, on_batch, max_batches)
  confusion = evaluator.metrics.confusion_matrix()
  report = {
      'miou': result['miou'], 'pixel_accuracy': result['pixel_accuracy'],
      'per_class_iou': {name: (None if math.isnan(iou) else iou)
                        for name, iou in zip(spec.class_names, result['per_class_iou'])},
      'num_images': result['num_images'], 'scales': list(options['scales']),
      'flip': options['flip'], 'checkpoint': checkpoint, 'split': FLAGS.split,
      'dataset': spec.name, 'tfrecord_dir': FLAGS.tfrecord_dir, 'precision': runtime.precision,
      'confusion_matrix': confusion.tolist(),
  }
  files.write_json(os.path.join(FLAGS.workdir, 'eval.json'), report)
  visualize.plot_confusion(confusion, spec.class_names,
                           os.path.join(FLAGS.workdir, 'confusion.png'),
                           f'{spec.name} {FLAGS.split}: mIoU {100 * report["miou"]:.2f}')
  print(f'  {"class":<24} IoU')
  for name, iou in report['per_class_iou'].items():
    print(f'  {name:<24} {"n/a (absent)" if iou is None else f"{100 * iou:6.2f}"}')
  confused = evaluation.most_confused(confusion, spec.class_names)
  if confused:
    print('  most confused (true -> predicted, share of the true class\'s pixels): ' + ', '.join(
        f'{t} -> {p} {100 * f:.1f}%' for t, p, f in confused))
  print(f'[evaluate] mIoU {100 * report["miou"]:.2f}  pixel accuracy '
        f'{100 * report["pixel_accuracy"]:.2f}  ({report["num_images"]} images); written to '
        f'{os.path.join(FLAGS.workdir, "eval.json")}'
        + (f'; predictions in {FLAGS.save_predictions}' if FLAGS.save_predictions else ''))


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
