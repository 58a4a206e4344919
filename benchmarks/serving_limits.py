r"""What a request of decompression bombs costs the served model; one JSON line.

  python benchmarks/serving_limits.py [--side=16000] [--images=8]

Exports a small segmenter (the limits do not depend on the network), loads the SavedModel as a
model server would, answers one ordinary request (so that the graph and its kernels are loaded),
then sends, per format, one request of `images` encoded images whose headers claim side x side RGB
pixels (tests/image_bombs.py: the PNG a real deflate bomb). For each: whether it was refused, the
seconds to the refusal, and how much the process's peak RSS grew. Last, for comparison, what
decoding one of the PNG bombs with `tf.io.decode_image` alone costs (what the export did before
its header checks): seconds and peak RSS growth.
"""
import json
import os
import platform
import resource
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

flags.DEFINE_integer('side', 16000, 'The side each bomb claims.')
flags.DEFINE_integer('images', 8, 'Bombs per request.')
FLAGS = flags.FLAGS


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  from official.autodeeplab.data import example
  from official.autodeeplab.modeling import segmenter
  from official.autodeeplab.search.genotype import PAPER_GENOTYPE
  from official.autodeeplab.serving import export
  from tests import image_bombs
  model = segmenter.build_segmenter(PAPER_GENOTYPE, 19, filter_multiplier=4)
  with tempfile.TemporaryDirectory() as root:
    path = export.export(model, root, 'bench')
    serve = tf.saved_model.load(path).signatures[export.SERVING_DEFAULT]
    image = np.random.default_rng(0).integers(0, 256, [64, 96, 3], dtype=np.uint8)
    serve(image_bytes=tf.constant([example.png_bytes(image)]))
    results = {}
    for name, make in image_bombs.FORMATS.items():
      bomb = make(FLAGS.side, FLAGS.side)
      before, start = peak_rss_mb(), time.perf_counter()
      try:
        serve(image_bytes=tf.constant([bomb] * FLAGS.images))
        message = None
      except tf.errors.InvalidArgumentError as e:
        message = export.error_text(e.message)
      results[name] = {'bytes_per_image': len(bomb), 'refused': message is not None,
                       'message': message, 'seconds': round(time.perf_counter() - start, 4),
                       'peak_rss_growth_mb': round(peak_rss_mb() - before, 1)}
    before, start = peak_rss_mb(), time.perf_counter()
    try:
      tf.io.decode_image(image_bombs.png(FLAGS.side, FLAGS.side), channels=3,
                         expand_animations=False)
    except tf.errors.OpError:
      pass
    unchecked = {'seconds': round(time.perf_counter() - start, 3),
                 'peak_rss_growth_mb': round(peak_rss_mb() - before, 1)}
  print(json.dumps({'benchmark': 'serving_limits', 'side': FLAGS.side, 'images': FLAGS.images,
                    'machine': platform.processor() or platform.machine(),
                    'requests': results, 'decode_one_png_bomb_unchecked': unchecked}))


if __name__ == '__main__':
  app.run(main)
