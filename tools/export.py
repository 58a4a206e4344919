r"""Exports a trained segmenter: a SavedModel in TF Serving's layout, or a LiteRT, ONNX or Keras
file, each for its standard client.

  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/serving \
      [--model_name=autodeeplab] [--version=N] [--checkpoint=PREFIX] [--scales=... --flip]
  python -m tools.export --genotype=paper --model_size=S --num_classes=19 --dataset=cityscapes \
      --export_dir=runs/serving [--checkpoint=PREFIX]      # no workdir: given (or fresh) weights
  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/tflite --format=tflite \
      --input_size=513,513 [--quantize=none|float16|int8 --tfrecord_dir=... \
      --calibration_split=val --calibration_images=100]
  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/onnx --format=onnx \
      [--input_size=513,513]                          # without: dynamic height and width
  python -m tools.export --workdir=runs/cityscapes_s --export_dir=runs/keras --format=keras

Writes `{export_dir}/{model_name}/{version}/` (version: the next integer unless given) with the
`serving_default` (encoded image bytes) and `predict_tensor` signatures, `assets.extra/labels.json`,
`model.json` and TF Serving warm-up requests; see official/autodeeplab/serving/export.py. What a
request may cost (`--max_side`, `--max_pixels`, `--max_request_pixels`) is checked in the graph from
each image's header before it is decoded (serving/image_limits.py).
`--format=tflite` writes `{export_dir}/{model_name}/{model_name}_{H}x{W}[_{quantize}].tflite`
(uint8 [1, H, W, 3] in, per-class scores [1, H, W, classes] out, MediaPipe's image segmenter
metadata inside), `--format=onnx` `{model_name}[_{H}x{W}].onnx` (float32 raw values in, logits
and class ids out), `--format=keras` `{model_name}.keras` (raw values in, logits out), each beside
a `labels.json` and a `model.json`; see official/autodeeplab/serving/formats.py.
"""
from __future__ import annotations

import os
import shlex

from absl import flags

from official.autodeeplab.modeling import sizes
from official.autodeeplab.search import genotype as genotype_lib
from official.autodeeplab import launch
from . import common

FLAGS = flags.FLAGS
# Without --workdir, the model comes from --genotype, --model_size / --filter_multiplier and
# --num_classes.
common.define_flags('workdir', 'checkpoint', 'model_size', 'filter_multiplier', 'dataset',
                    'model_name', 'precision', genotype=None, num_classes=None, scales=['1'], flip=False)
flags.DEFINE_enum('format', 'saved_model', ['saved_model', 'tflite', 'onnx', 'keras'],
                  'saved_model (TF Serving), tflite (LiteRT and MediaPipe, a fixed --input_size), '
                  'onnx (onnxruntime, TensorRT) or keras (a .keras archive).')
flags.DEFINE_string('input_size', None, '--format=tflite (required) or onnx (else dynamic): the '
                    'model\'s fixed input, HEIGHT,WIDTH.')
flags.DEFINE_enum('quantize', 'none', ['none', 'float16', 'int8'], '--format=tflite: float32, '
                  'float16 weights, or full-integer int8 (calibrated on --tfrecord_dir).')
common.define_flags('tfrecord_dir')
flags.DEFINE_string('calibration_split', 'val', '--quantize=int8: split of --tfrecord_dir to '
                    'calibrate on.')
flags.DEFINE_integer('calibration_images', 100, '--quantize=int8: images to calibrate on (fewer '
                     'when the split is smaller).')
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


# Flags that only some formats take (the others refuse them in one line).
FORMAT_FLAGS = {
    'saved_model': ('scales', 'flip', 'max_side', 'max_pixels', 'max_request_pixels'),
    'tflite': ('input_size', 'quantize', 'calibration_split', 'calibration_images'),
    'onnx': ('input_size',),
    'keras': (),
}


def _check_format_flags() -> tuple[int, int] | None:
  """The flags only other formats take refused, each format's own checked; returns the input
  size (--input_size) when the format has one, before any work."""
  own = set(FORMAT_FLAGS[FLAGS.format])
  given = [f'--{name}' for flags_ in FORMAT_FLAGS.values() for name in flags_
           if name not in own and FLAGS[name].present]
  if given:
    takers = sorted(f for f, names in FORMAT_FLAGS.items()
                    if any(g[2:] in names for g in given))
    raise common.UserInputError(f'{", ".join(sorted(set(given)))}: not with '
                                f'--format={FLAGS.format} (only with --format='
                                f'{" or ".join(takers)})')
  if FLAGS.format in ('tflite', 'onnx', 'keras') and FLAGS.precision not in (None, 'float32'):
    raise common.UserInputError(f'--precision={FLAGS.precision}: a {FLAGS.format} export is '
                                'float32' + (' or quantized (--quantize=float16|int8)'
                                             if FLAGS.format == 'tflite' else '')
                                + '; leave --precision out')
  if FLAGS.format == 'tflite':
    if FLAGS.input_size is None:
      raise common.UserInputError('--format=tflite needs --input_size=HEIGHT,WIDTH (a LiteRT '
                                  'model has one fixed input size)')
    if FLAGS.quantize == 'int8' and not FLAGS.tfrecord_dir:
      raise common.UserInputError('--quantize=int8 needs calibration data: --tfrecord_dir (and '
                                  '--calibration_split, default val)')
    if FLAGS.calibration_images < 1:
      raise common.UserInputError(f'--calibration_images={FLAGS.calibration_images}: must be '
                                  'positive')
  if FLAGS.input_size is None:
    return None
  return sizes.parse_image_size(FLAGS.input_size, 'input_size', sizes.MAX_IMAGE_SIDE)


def _calibration(size: tuple[int, int], image):
  """--quantize=int8's representative images (else None)."""
  if FLAGS.quantize != 'int8':
    return None
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.serving import tflite
  shards = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.calibration_split)
  images = tflite.calibration_images(shards, *size, FLAGS.calibration_images, image)
  print(f'[export] int8 calibrated on {len(images)} image(s) of {FLAGS.tfrecord_dir} '
        f'{FLAGS.calibration_split}')
  return images


def _export_file(model, size, spec, description: dict) -> str:
  """--format=tflite|onnx|keras: the file (and its labels.json, model.json)."""
  from official.autodeeplab.serving import formats
  from official.autodeeplab.training import run_description
  image = run_description.image_spec(description)
  directory = os.path.join(FLAGS.export_dir, FLAGS.model_name)
  if FLAGS.format == 'tflite':
    return formats.write_tflite(model, directory, FLAGS.model_name, size, FLAGS.quantize,
                                _calibration(size, image), image, spec, description,
                                _dataset_ids(spec), str(FLAGS.version or 1))
  if FLAGS.format == 'onnx':
    return formats.write_onnx(model, directory, FLAGS.model_name, size, image, spec,
                              description, _dataset_ids(spec))
  return formats.write_keras(model, directory, FLAGS.model_name, image, spec, description,
                             _dataset_ids(spec))


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
  size = _check_format_flags()
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
  if FLAGS.format != 'saved_model':
    path = _export_file(model, size, spec, {**description, 'dataset': dataset,
                                            'checkpoint': checkpoint})
    client = {'tflite': '--tflite', 'onnx': '--onnx'}.get(FLAGS.format)
    print(f'[export] {checkpoint or "freshly initialised weights"} -> {path}'
          + (f' ({FLAGS.quantize})' if FLAGS.format == 'tflite' else '')
          + (f'\n  predict: python -m tools.predict {client}={shlex.quote(path)} --input=IMAGES '
             '--output_dir=predictions' if client else
             f'\n  load:    keras.saving.load_model({path!r})'))
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


def entry() -> None:
  """The console command (`autodeeplab-...` of an installed package)."""
  common.run(main)


if __name__ == '__main__':
  entry()
