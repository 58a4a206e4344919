r"""Export benchmark: LiteRT and ONNX (onnxruntime) latency, file sizes, agreement and mIoU, and
MediaPipe's ImageSegmenter agreement with LiteRT; one JSON line.

  python benchmarks/tflite.py [--workdir=runs/quickstart/train --tfrecord_dir=runs/quickstart/data]
      [--latency_size=513] [--model_size=S] [--num_threads=2] [--repeats=5]

Latency: Auto-DeepLab-S (the paper's genotype, 19 classes) at latency_size x latency_size, one
image: the SavedModel's `predict_tensor` against the LiteRT interpreter (XNNPACK, num_threads) for
each quantization (int8 calibrated on random images: latency does not depend on the weights) and
onnxruntime (float32, intra-op threads num_threads) on the fixed-size ONNX export; medians of
`repeats` runs after one warm-up; file sizes on disk. Accuracy, when the workdir exists (the
quickstart's retrained model): each quantization converted at the val images' size, int8
calibrated on the val split, and the dynamic-size ONNX export; pixel agreement with the
SavedModel's class ids and mIoU against the labels; MediaPipe's category masks on the float32
export (with its metadata) against tools.predict --tflite's.
"""
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_string('workdir', 'runs/quickstart/train', 'A trained workdir for agreement and '
                    'mIoU ("" skips them).')
flags.DEFINE_string('tfrecord_dir', 'runs/quickstart/data', 'Its converted dataset.')
flags.DEFINE_string('split', 'val', 'Split to score and calibrate on.')
flags.DEFINE_integer('latency_size', 513, 'Square input of the latency measurement.')
flags.DEFINE_string('model_size', 'S', 'S, M or L for the latency measurement.')
flags.DEFINE_integer('num_threads', 2, 'LiteRT interpreter and onnxruntime threads.')
flags.DEFINE_integer('repeats', 5, 'Timed runs per model.')
FLAGS = flags.FLAGS


def median_seconds(fn, repeats: int) -> float:
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def latency(directory: str) -> dict:
  import numpy as np
  import tensorflow as tf
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.serving import export
  from official.autodeeplab.serving import tflite
  size = FLAGS.latency_size
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 19, FLAGS.model_size)
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, [size, size, 3], dtype=np.uint8)
  saved = tf.saved_model.load(export.export(model, os.path.join(directory, 'serving')))
  predict = saved.signatures[export.PREDICT_TENSOR]
  batch = tf.constant(image[np.newaxis], tf.float32)
  report = {'saved_model_s': median_seconds(lambda: predict(images=batch)['semantic'].numpy(),
                                            FLAGS.repeats)}
  calibration = [rng.integers(0, 256, [size, size, 3], dtype=np.uint8) for _ in range(4)]
  for quantize in tflite.QUANTIZATIONS:
    start = time.perf_counter()
    data = tflite.convert(model, size, size, quantize, calibration)
    report[f'{quantize}_convert_s'] = round(time.perf_counter() - start, 1)
    path = tflite.write_model(data, os.path.join(directory, f'{quantize}.tflite'))
    interpreter = tflite.LiteRTModel(path, FLAGS.num_threads)
    report[f'{quantize}_s'] = median_seconds(lambda: interpreter.predict(image), FLAGS.repeats)
    report[f'{quantize}_mb'] = round(len(data) / 2**20, 2)
  from official.autodeeplab.data import datasets
  from official.autodeeplab.serving import onnx_export
  start = time.perf_counter()
  data = onnx_export.convert(model, datasets.RGB8, (size, size))
  report['onnx_convert_s'] = round(time.perf_counter() - start, 1)
  report['onnx_mb'] = round(len(data) / 2**20, 2)
  path = os.path.join(directory, 'model.onnx')
  with open(path, 'wb') as f:
    f.write(data)
  runner = onnx_export.OnnxModel(path, FLAGS.num_threads)
  report['onnx_s'] = median_seconds(lambda: runner.predict(image), FLAGS.repeats)
  for quantize in (*tflite.QUANTIZATIONS, 'onnx'):
    report[f'{quantize}_vs_saved_model'] = round(report[f'{quantize}_s'] /
                                                 report['saved_model_s'], 3)
  report['int8_size_vs_float32'] = round(report['int8_mb'] / report['none_mb'], 3)
  return {k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()}


def accuracy(directory: str) -> dict:
  import numpy as np
  import tensorflow as tf
  from official.autodeeplab.data import example
  from official.autodeeplab.data import input_pipeline
  from official.autodeeplab.serving import export
  from official.autodeeplab.serving import tflite
  from official.autodeeplab.training import evaluation
  from official.autodeeplab.training import checkpoints
  model, description, _ = checkpoints.load_trained_model(FLAGS.workdir)
  files = input_pipeline.split_files(FLAGS.tfrecord_dir, FLAGS.split)
  parsed = [example.parse(s) for s in tf.data.TFRecordDataset(files)]
  images = [p['image'].numpy() for p in parsed]
  labels = [p['label'].numpy().astype(np.int64) for p in parsed]
  height = max(i.shape[0] for i in images)
  width = max(i.shape[1] for i in images)
  server = export.SegmentationServer(model)
  reference = [server.predict_tensor(tf.constant(i[np.newaxis], tf.float32))['semantic'][0].numpy()
               for i in images]

  def miou(predictions):
    metrics = evaluation.SegmentationMetrics(description['num_classes'])
    for label, prediction in zip(labels, predictions):
      metrics.update(label, prediction)
    return metrics.result()['miou']

  report = {'eval_images': len(images), 'eval_size': [height, width],
            'saved_model_miou': round(miou(reference), 4)}
  calibration = [tflite.letterbox(i, height, width)[0] for i in images[:100]]
  for quantize in tflite.QUANTIZATIONS:
    data = tflite.convert(model, height, width, quantize, calibration)
    interpreter = tflite.LiteRTModel(tflite.write_model(
        data, os.path.join(directory, f'eval_{quantize}.tflite')), FLAGS.num_threads)
    predictions = [interpreter.predict(i) for i in images]
    agree = sum(int((p == r).sum()) for p, r in zip(predictions, reference))
    report[f'{quantize}_agreement'] = round(agree / sum(r.size for r in reference), 5)
    report[f'{quantize}_miou'] = round(miou(predictions), 4)
  report.update(_onnx_and_mediapipe(directory, model, description, images, reference, miou,
                                    height, width))
  return report


def _onnx_and_mediapipe(directory, model, description, images, reference, miou, height, width):
  """The dynamic ONNX export on each val image at its own size; MediaPipe's ImageSegmenter on the
  float32 LiteRT export with its metadata, on the val images letterboxed to its input size."""
  import numpy as np
  from official.autodeeplab.data import datasets
  from official.autodeeplab.serving import formats
  from official.autodeeplab.serving import onnx_export
  from official.autodeeplab.serving import tflite
  spec = datasets.get_spec(description['dataset']) if description.get('dataset') else None
  path = formats.write_onnx(model, os.path.join(directory, 'onnx'), 'm', None, datasets.RGB8,
                            spec, description, None)
  runner = onnx_export.OnnxModel(path, FLAGS.num_threads)
  predictions = [runner.predict(i) for i in images]
  agree = sum(int((p == r).sum()) for p, r in zip(predictions, reference))
  report = {'onnx_agreement': round(agree / sum(r.size for r in reference), 5),
            'onnx_miou': round(miou(predictions), 4)}
  import mediapipe as mp
  from mediapipe.tasks.python import vision
  from mediapipe.tasks.python.core import base_options
  path = formats.write_tflite(model, os.path.join(directory, 'mediapipe'), 'm', (height, width),
                              'none', None, datasets.RGB8, spec, description, None, '1',
                              log=lambda line: None)
  ours = tflite.LiteRTModel(path, FLAGS.num_threads)
  options = vision.ImageSegmenterOptions(
      base_options=base_options.BaseOptions(model_asset_path=path), output_category_mask=True)
  agree = total = 0
  with vision.ImageSegmenter.create_from_options(options) as segmenter:
    labels = list(segmenter.labels)
    for image in images:
      boxed = tflite.letterbox(image, height, width)[0]
      mask = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB,
                                        data=np.ascontiguousarray(boxed))).category_mask
      agree += int((mask.numpy_view().reshape(height, width) == ours.predict(boxed)).sum())
      total += height * width
  report['mediapipe_agreement'] = round(agree / total, 5)
  report['mediapipe_labels_match'] = labels == (list(spec.class_names) if spec else labels)
  return report


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as directory:
    report = {'benchmark': 'tflite', 'latency_size': FLAGS.latency_size,
              'model_size': FLAGS.model_size, 'num_threads': FLAGS.num_threads,
              'cpu_count': os.cpu_count(), 'machine': platform.processor() or platform.machine()}
    report.update(latency(directory))
    if FLAGS.workdir and os.path.isdir(FLAGS.workdir):
      report.update(accuracy(directory))
  print(json.dumps(report))


if __name__ == '__main__':
  app.run(main)
