r"""Exports a trained segmenter as a SavedModel in TF Serving's layout, or as a LiteRT model.

  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/serving \
      [--model_name=autodeeplab] [--version=N] [--checkpoint=PREFIX] [--scales=... --flip]
  python -m tools.export --genotype=paper --model_size=S --num_classes=19 --dataset=cityscapes \
      --export_dir=runs/serving [--checkpoint=PREFIX]      # no workdir: given (or fresh) weights
  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/tflite --format=tflite \
      --input_size=513,513 [--quantize=none|float16|int8 --tfrecord_dir=... \
      --calibration_split=val --calibration_images=100] [--with_logits]

Writes `{export_dir}/{model_name}/{version}/` (version: the next integer unless given) with the
`serving_default` (encoded image bytes) and `predict_tensor` signatures, `assets.extra/labels.json`,
`model.json` and TF Serving warm-up requests; see official/autodeeplab/serving/export.py. What a
request may cost (`--max_side`, `--max_pixels`, `--max_request_pixels`) is checked in the graph from
each image's header before it is decoded (serving/image_limits.py).
`--format=tflite` writes `{export_dir}/{model_name}/{model_name}_{H}x{W}[_{quantize}].tflite`
beside a `labels.json` (serving/tflite.py): uint8 [1, H, W, 3] in, class ids [1, H, W] out.
"""
from __future__ import annotations

import os
import shlex

from absl import flags

from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab import launch
from tools import common

FLAGS = flags.FLAGS
# Without --workdir, the model comes from --genotype, --model_size / --filter_multiplier and
# --num_classes.
common.define_flags('workdir', 'checkpoint', 'model_size', 'filter_multiplier', 'dataset',
                    'model_name', 'precision', genotype=None, num_classes=None, scales=['1'], flip=False)
flags.DEFINE_enum('format', 'saved_model', ['saved_model', 'tflite'], 'saved_model (TF Serving) '
                  'or tflite (LiteRT, a fixed --input_size).')
flags.DEFINE_string('input_size', None, '--format=tflite: the model\'s fixed input, HEIGHT,WIDTH.')
flags.DEFINE_enum('quantize', 'none', ['none', 'float16', 'int8'], '--format=tflite: float32, '
                  'float16 weights, or full-integer int8 (calibrated on --tfrecord_dir).')
common.define_flags('tfrecord_dir')
flags.DEFINE_string('calibration_split', 'val', '--quantize=int8: split of --tfrecord_dir to '
                    'calibrate on.')
flags.DEFINE_integer('calibration_images', 100, '--quantize=int8: images to calibrate on (fewer '
                     'when the split is smaller).')
flags.DEFINE_bool('with_logits', False, '--format=tflite: also output the logits.')
flags.DEFINE_string('export_dir', None, 'Model server base path.')
flags.DEFINE_integer('version', None, 'Version to write (default: the next integer).')
flags.DEFINE_integer('max_side', sizes.MAX_IMAGE_SIDE, 'The served model refuses an image with a '
                     'longer side (read from its header, before decoding).')
flags.DEFINE_integer('max_pixels', sizes.MAX_IMAGE_PIXELS, 'The served model refuses an image '
                     'that decodes to more pixels (frames x pixels for an animated GIF).')
flags.DEFINE_integer('max_request_pixels', sizes.MAX_REQUEST_PIXELS, 'The served model refuses '
                     'a request whose images decode to more pixels together.')
flags.mark_flag_as_required('export_dir')


def _model_from_flags():
  """(model, description) from --genotype/--model_size/--num_classes, restored from
  --checkpoint when given."""
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.training import checkpoints
  from official.autodeeplab.training import run_description
  if FLAGS.genotype is None or FLAGS.num_classes is None:
    raise common.UserInputError('pass --workdir, or --genotype, --model_size (or '
                                '--filter_multiplier) and --num_classes')
  geno = genotype_lib.load(FLAGS.genotype)
  multiplier = sizes.resolve_filter_multiplier(FLAGS.model_size, FLAGS.filter_multiplier)
  model = segmenter.build_segmenter(geno, FLAGS.num_classes, filter_multiplier=multiplier)
  if FLAGS.checkpoint:
    import tensorflow as tf
    if not tf.io.gfile.exists(FLAGS.checkpoint + '.index'):
      raise common.UserInputError(f'--checkpoint={FLAGS.checkpoint}: no such checkpoint')
    checkpoints.restore(tf.train.Checkpoint(model=model), FLAGS.checkpoint,
                        f'--checkpoint={FLAGS.checkpoint}', partial=True)
  return model, run_description.model_description(geno, multiplier, FLAGS.num_classes,
                                                  FLAGS.dataset)


def _tflite_input_size() -> tuple[int, int]:
  """--input_size and the flags only --format=tflite takes, checked before any work."""
  if FLAGS.format == 'tflite' and FLAGS.precision not in (None, 'float32'):
    raise common.UserInputError(f'--precision={FLAGS.precision}: a LiteRT model is float32 or '
                                'quantized (--quantize=float16|int8); leave --precision out')
  if FLAGS.format != 'tflite':
    given = [f'--{name}' for name in ('input_size', 'calibration_split', 'with_logits')
             if FLAGS[name].present] + (['--quantize'] if FLAGS.quantize != 'none' else [])
    if given:
      raise common.UserInputError(f'{", ".join(given)}: only with --format=tflite')
    return None
  if FLAGS.input_size is None:
    raise common.UserInputError('--format=tflite needs --input_size=HEIGHT,WIDTH (a LiteRT model '
                                'has one fixed input size)')
  if FLAGS.scales != ['1'] or FLAGS.flip:
    raise common.UserInputError('--scales/--flip: not with --format=tflite (single scale only)')
  if FLAGS.quantize == 'int8' and not FLAGS.tfrecord_dir:
    raise common.UserInputError('--quantize=int8 needs calibration data: --tfrecord_dir (and '
                                '--calibration_split, default val)')
  if FLAGS.calibration_images < 1:
    raise common.UserInputError(f'--calibration_images={FLAGS.calibration_images}: must be '
                                'positive')
  return sizes.parse_image_size(FLAGS.input_size, 'input_size', sizes.MAX_IMAGE_SIDE)


def _export_tflite(model, size: tuple[int, int], spec, description: dict) -> str:
  """`{export_dir}/{model_name}/{model_name}_{H}x{W}[_{quantize}].tflite` + labels.json and
  model.json (what the model is and takes)."""
  from official.autodeeplab import files
  from official.autodeeplab.serving import export
  from official.autodeeplab.serving import tflite
  from official.autodeeplab.training import run_description
  image = run_description.image_spec(description)
  calibration = None
  if FLAGS.quantize == 'int8':
    from official.autodeeplab.data import input_pipeline
    shards = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.calibration_split)
    calibration = tflite.calibration_images(shards, *size, FLAGS.calibration_images, image)
  data = tflite.convert(model, *size, FLAGS.quantize, calibration, FLAGS.with_logits, image)
  directory = os.path.join(FLAGS.export_dir, FLAGS.model_name)
  path = tflite.write_model(data, os.path.join(directory, tflite.model_file_name(
      FLAGS.model_name, *size, FLAGS.quantize)))
  files.write_json(os.path.join(directory, 'labels.json'), export.labels_document(
      model.num_classes, spec.class_names if spec else None, spec.palette if spec else None,
      _dataset_ids(spec)))
  files.write_json(os.path.join(directory, 'model.json'), {
      **description, 'image': image.to_dict(), 'input_size': list(size),
      'quantize': FLAGS.quantize})
  if calibration is not None:
    print(f'[export] int8 calibrated on {len(calibration)} image(s) of '
          f'{FLAGS.tfrecord_dir} {FLAGS.calibration_split}')
  return path


def _dataset_ids(spec):
  """The dataset's own label value per class for labels.json (None: unknown or not invertible)."""
  if spec is None:
    return None
  from official.autodeeplab.data import datasets
  try:
    return datasets.dataset_ids(spec)
  except common.UserInputError:
    return None


def main(argv):
  del argv
  scales = common.parse_scales(FLAGS.scales)
  tflite_size = _tflite_input_size()
  if FLAGS.version is not None and FLAGS.version < 1:
    raise common.UserInputError(f'--version={FLAGS.version}: must be a positive integer')
  # The SavedModel computes in the precision; its outputs stay float32.
  runtime = launch.start('inference', strategy=None, precision=FLAGS.precision).runtime
  from official.autodeeplab.data import datasets
  from official.autodeeplab.data import spec_file
  from official.autodeeplab.serving import export
  from official.autodeeplab.serving import image_limits
  try:
    limits = image_limits.Limits(FLAGS.max_side, FLAGS.max_pixels, FLAGS.max_request_pixels)
  except ValueError as e:
    raise common.UserInputError(f'--{e}') from None
  from official.autodeeplab.training import checkpoints
  from official.autodeeplab.training import run_description
  if FLAGS.workdir:
    if FLAGS.genotype or FLAGS.model_size or FLAGS.filter_multiplier or FLAGS.num_classes:
      raise common.UserInputError('--workdir describes the model (model.json): leave out '
                                  '--genotype/--model_size/--filter_multiplier/--num_classes')
    model, description, checkpoint = checkpoints.load_trained_model(
        FLAGS.workdir, FLAGS.checkpoint, float32_batch_norm=runtime.float32_batch_norm)
  else:
    (model, description), checkpoint = _model_from_flags(), FLAGS.checkpoint
  dataset = FLAGS.dataset or description.get('dataset')
  spec = None
  if FLAGS.dataset:
    spec = datasets.get_spec(dataset, model.num_classes)
  elif dataset:  # the workdir's: its own spec (model.json) or the built-in one it names
    spec = spec_file.spec_of(description, f'{FLAGS.workdir}/model.json')
  if spec is not None:
    if spec.num_classes != model.num_classes:
      raise common.UserInputError(f'--dataset={dataset} has {spec.num_classes} classes, the '
                                  f'model predicts {model.num_classes}')
  if tflite_size is not None:
    path = _export_tflite(model, tflite_size, spec, description)
    print(f'[export] {checkpoint or "freshly initialised weights"} -> {path} ({FLAGS.quantize})\n'
          f'  predict: python -m tools.predict --tflite={shlex.quote(path)} --input=IMAGES '
          '--output_dir=predictions')
    return
  description = {**description, 'dataset': dataset, 'checkpoint': checkpoint,
                 'precision': runtime.precision}
  path = export.export(model, FLAGS.export_dir, FLAGS.model_name, FLAGS.version,
                       spec.class_names if spec else None, spec.palette if spec else None,
                       scales, FLAGS.flip, description, _dataset_ids(spec), limits,
                       run_description.image_spec(description))
  print(f'[export] {checkpoint or "freshly initialised weights"} -> {path} '
        f'({runtime.precision})\n'
        f'  serve:   {common.serving_command(os.path.dirname(path), FLAGS.model_name)}\n'
        f'  predict: python -m tools.predict --saved_model={shlex.quote(path)} --input=IMAGES '
        '--output_dir=predictions')


if __name__ == '__main__':
  common.run(main)
