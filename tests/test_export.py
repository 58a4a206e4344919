"""SavedModel export as TF Serving sees it: signatures (saved_model_cli), a fresh process as the
client, warm-up records, the predict tool (local, and REST against a stand-in server), bad requests.
"""
import base64
import http.server
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from official.autodeeplab.data import example
from official.autodeeplab.modeling import segmenter
from official.autodeeplab.search.genotype import Genotype, PAPER_GENOTYPE
from official.autodeeplab.serving import export
from tests import image_bombs
from tests.conftest import ROOT, randomize_batch_norm, run_tool

# One worker runs this module's tests (xdist_group), not always in a row: its fixtures are
# session-scoped, so they are built once all the same.
pytestmark = pytest.mark.xdist_group('export')

GENOTYPE = Genotype(cell=PAPER_GENOTYPE.cell[:2], path=(0, 1, 1))
RNG = np.random.default_rng(5)
IMAGE = RNG.integers(0, 256, [37, 53, 3], dtype=np.uint8)


@pytest.fixture(scope='session')
def exported(tmp_path_factory):
  root = tmp_path_factory.mktemp('export')
  tf.keras.utils.set_random_seed(3)
  model = segmenter.build_segmenter(GENOTYPE, 5, filter_multiplier=2)
  randomize_batch_norm(model)
  logits = model(tf.constant(IMAGE[None], tf.float32) / 127.5 - 1.0)
  assert float(tf.math.reduce_std(logits)) > 0.05  # predictions that are not all ties
  checkpoint = tf.train.Checkpoint(model=model).save(str(root / 'weights' / 'ckpt'))
  genotype = str(root / 'genotype.json')
  GENOTYPE.to_json(genotype)
  result = run_tool('export', f'--genotype={genotype}', '--filter_multiplier=2',
                    '--num_classes=5', '--dataset=synthetic', f'--checkpoint={checkpoint}',
                    f'--export_dir={root / "serving"}', '--model_name=tiny',
                    '--max_request_pixels=50000000')
  assert result.returncode == 0, result.stderr[-3000:]
  return {'root': root, 'model': model, 'path': str(root / 'serving' / 'tiny' / '1'),
          'genotype': genotype, 'checkpoint': checkpoint, 'stdout': result.stdout}


def test_layout_and_assets(exported):
  path = exported['path']
  assert sorted(os.listdir(os.path.dirname(path))) == ['1']  # no temporary directory left
  assert {'saved_model.pb', 'variables', 'assets.extra'} <= set(os.listdir(path))
  with open(os.path.join(path, 'assets.extra', 'labels.json')) as f:
    labels = json.load(f)
  assert labels['class_names'][:2] == ['background', 'shape1'] and len(labels['palette']) == 5
  with open(os.path.join(path, 'assets.extra', 'model.json')) as f:
    description = json.load(f)
  assert description['genotype']['path'] == [0, 1, 1]
  assert (description['max_side'], description['max_pixels'],
          description['max_request_pixels']) == (4096, 4096 * 4096, 50000000)
  assert 'docker run' in exported['stdout'] and 'tensorflow/serving' in exported['stdout']


def test_saved_model_cli_lists_both_signatures(exported):
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  result = subprocess.run([cli, 'show', '--all', '--dir', exported['path']], capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  text = result.stdout
  default = text[text.index("signature_def['serving_default']"):]
  assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING" in default
  for name in ("outputs['semantic']", "outputs['confidence']"):
    assert name in default
  tensor = text[text.index("signature_def['predict_tensor']"):]
  assert "inputs['images'] tensor_info:\n        dtype: DT_FLOAT" in tensor
  assert "outputs['logits']" in tensor and "shape: (-1, -1, -1, -1)" in tensor


FRESH_CLIENT = r'''
import json, resource, sys, time
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
path, image_file = sys.argv[1], sys.argv[2]
loaded = tf.saved_model.load(path)
serve, tensor = loaded.signatures['serving_default'], loaded.signatures['predict_tensor']
data = open(image_file, 'rb').read()
out = serve(image_bytes=tf.constant([data]))
logits = tensor(images=tf.constant(np.load(image_file + '.npy')[None], tf.float32))
np.savez(sys.argv[3], semantic=out['semantic'].numpy(), confidence=out['confidence'].numpy(),
         logits=logits['logits'].numpy())
answered = []
for record in tf.data.TFRecordDataset(path + '/assets.extra/tf_serving_warmup_requests'):
  log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
  request = log.predict_log.request
  batch = tf.make_ndarray(request.inputs['image_bytes'])
  result = loaded.signatures[request.model_spec.signature_name](image_bytes=tf.constant(batch))
  answered.append([request.model_spec.name, list(result['semantic'].shape)])
refused = {}
for name in sys.argv[4].split(','):  # eight bombs of each format in one request
  with open(f'{image_file}.{name}', 'rb') as f:
    bomb = f.read()
  before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
  try:
    serve(image_bytes=tf.constant([bomb] * 8))
    refused[name] = None
  except tf.errors.InvalidArgumentError as e:
    refused[name] = [e.message.strip().splitlines()[-2], time.perf_counter() - start,
                     (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024]
print(json.dumps(answered))
print(json.dumps(refused))
'''


def test_fresh_process_matches_the_keras_model_answers_warmup_and_refuses_bombs(exported,
                                                                                tmp_path):
  """The served model in a process of its own, as TF Serving runs it: outputs, warm-up records,
  and decompression bombs of each format refused from their headers (the process's peak RSS
  does not grow by the 8 x 768 MB that decoding them would take)."""
  image_file = str(tmp_path / 'image.png')
  with open(image_file, 'wb') as f:
    f.write(example.png_bytes(IMAGE))
  np.save(image_file + '.npy', IMAGE.astype(np.float32))
  for name, make in image_bombs.FORMATS.items():
    with open(f'{image_file}.{name}', 'wb') as f:
      f.write(make(16000, 16000))
  outputs = str(tmp_path / 'outputs.npz')
  result = subprocess.run([sys.executable, '-c', FRESH_CLIENT, exported['path'], image_file,
                           outputs, ','.join(image_bombs.FORMATS)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3'))
  assert result.returncode == 0, result.stderr[-3000:]
  got = np.load(outputs)
  logits = exported['model'](tf.constant(IMAGE[None], tf.float32) / 127.5 - 1.0).numpy()
  assert got['semantic'].shape == (1, 37, 53) and got['semantic'].dtype == np.int32
  np.testing.assert_allclose(got['logits'], logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got['semantic'][0], logits[0].argmax(-1))
  probabilities = tf.nn.softmax(logits[0]).numpy()
  np.testing.assert_allclose(got['confidence'][0], probabilities.max(-1), rtol=1e-5)
  warmup = json.loads(result.stdout.strip().splitlines()[-2])
  assert warmup == [['tiny', [1, 64, 96]], ['tiny', [2, 48, 56]]]
  refused = json.loads(result.stdout.strip().splitlines()[-1])
  for name, (message, _, rss_growth_mb) in refused.items():
    assert 'image_bytes[0]: image of 16000x16000 pixels' in message, (name, message)
    assert rss_growth_mb < 100, (name, rss_growth_mb)


@pytest.fixture(scope='session')
def served(exported):
  return tf.saved_model.load(exported['path']).signatures['serving_default']


def test_mixed_sizes_grayscale_and_rgba_in_one_batch(served, exported):
  gray = RNG.integers(0, 256, [20, 30], dtype=np.uint8)
  rgba = RNG.integers(0, 256, [41, 25, 4], dtype=np.uint8)
  out = served(image_bytes=tf.constant([example.png_bytes(IMAGE), example.png_bytes(gray),
                                        example.png_bytes(rgba)]))
  assert out['semantic'].shape == (3, 41, 53)
  np.testing.assert_array_equal(out['image_size'], [[37, 53], [20, 30], [41, 25]])
  semantic = out['semantic'].numpy()
  assert (semantic[1, 20:] == -1).all() and (semantic[1, :20, :30] >= 0).all()
  # Each image is segmented on its own: the same as sending it alone.
  alone = served(image_bytes=tf.constant([example.png_bytes(gray)]))['semantic'].numpy()
  np.testing.assert_array_equal(semantic[1, :20, :30], alone[0])
  as_rgb = np.repeat(gray[..., None], 3, -1)  # grayscale is replicated to RGB
  logits = exported['model'](tf.constant(np.pad(as_rgb, [[0, 12], [0, 2], [0, 0]])[None],
                                         tf.float32) / 127.5 - 1.0)
  del logits  # padded to 32: the in-graph policy, checked against the Keras model above at 37x53


@pytest.mark.parametrize('batch,message', [
    ([b'not an image at all'], r'image_bytes\[0\]: not a PNG, JPEG, GIF or BMP image \(19 bytes\)'),
    ([example.png_bytes(IMAGE), b''], r'image_bytes\[1\]: not a PNG, JPEG, GIF or BMP image \(0'),
    ([], 'empty batch'),
    ([example.png_bytes(np.zeros([8, 4097], np.uint8))],
     r'image of 8x4097 pixels; height and width must be at most 4096'),
    ([example.png_bytes(IMAGE), example.png_bytes(IMAGE)[:-20]],
     r'image_bytes\[1\]: truncated PNG: it does not end with the IEND chunk'),
    ([image_bombs.jpeg(40, 40)[:-2]], r'image_bytes\[0\]: truncated JPEG: no end-of-image'),
    ([example.png_bytes(IMAGE)[:30]], r'a PNG of 30 bytes is shorter than its header'),
    ([image_bombs.gif(3000, 3000, frames=3)], r'animated GIF of 3 frames of 3000x3000 pixels '
     r'\(27000000 pixels to decode\); at most 16777216 pixels are decoded per image'),
    ([image_bombs.png(4000, 4000)] * 5, r'image_bytes: the request holds 5 images that decode '
     r'to 80000000 pixels; at most 50000000 per request'),
])
def test_bad_requests_are_invalid_argument(served, batch, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    served(image_bytes=tf.constant(batch, tf.string))


def test_predict_tool_on_a_directory(exported, tmp_path):
  inputs = tmp_path / 'images'
  inputs.mkdir()
  for name, image in (('a', IMAGE), ('b', RNG.integers(0, 256, [33, 40, 3], dtype=np.uint8))):
    (inputs / f'{name}.png').write_bytes(example.png_bytes(image))
  (inputs / 'notes.txt').write_text('not an image')  # ignored: not an image extension
  out = tmp_path / 'out'
  result = run_tool('predict', f'--saved_model={os.path.dirname(exported["path"])}',
                    f'--input={inputs}', f'--output_dir={out}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(out)) == ['a.png', 'a_colour.png', 'a_overlay.png', 'b.png',
                                     'b_colour.png', 'b_overlay.png']
  from PIL import Image
  assert np.asarray(Image.open(out / 'b.png')).shape == (33, 40)
  corrupt = bytearray(example.png_bytes(IMAGE))
  corrupt[60:200] = b'x' * 140  # the header and IEND intact, the pixel data not
  (inputs / 'corrupt.png').write_bytes(bytes(corrupt))
  (inputs / 'bomb.jpg').write_bytes(image_bombs.jpeg(16000, 16000))
  for name in os.listdir(out):
    os.remove(out / name)
  result = run_tool('predict', f'--saved_model={exported["path"]}', f'--input={inputs}',
                    f'--output_dir={out}')
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert 'bomb.jpg: image of 16000x16000 pixels; height and width must be at most 4096' in (
      result.stderr)
  assert 'corrupt.png: the decoder refused it: Invalid PNG data' in result.stderr
  assert '2 of 4 image(s) could not be segmented' in result.stderr
  assert sorted(os.listdir(out))[:2] == ['a.png', 'a_colour.png'] and len(os.listdir(out)) == 6


class _FakeServing(http.server.BaseHTTPRequestHandler):
  """TF Serving's REST :predict, answered by the SavedModel (the real server cannot be installed
  here): checks the request format the predict tool sends."""
  signature = None
  requests = []

  def do_POST(self):  # noqa: N802 (http.server's naming)
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    _FakeServing.requests.append((self.path, body['signature_name']))
    data = [base64.b64decode(instance['b64']) for instance in body['instances']]
    out = _FakeServing.signature(image_bytes=tf.constant(data))
    predictions = [{k: v.numpy()[i].tolist() for k, v in out.items()} for i in range(len(data))]
    payload = json.dumps({'predictions': predictions}).encode()
    self.send_response(200)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(payload)))
    self.end_headers()
    self.wfile.write(payload)

  def log_message(self, *args):
    pass


def test_predict_tool_rest_client(exported, served, tmp_path):
  _FakeServing.signature = served
  server = http.server.HTTPServer(('127.0.0.1', 0), _FakeServing)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    image = tmp_path / 'c.png'
    image.write_bytes(example.png_bytes(IMAGE))
    out = tmp_path / 'out'
    result = run_tool('predict', f'--server=127.0.0.1:{server.server_port}',
                      '--model_name=tiny', f'--input={image}', f'--output_dir={out}',
                      '--dataset=synthetic')
  finally:
    server.shutdown()
  assert result.returncode == 0, result.stderr[-3000:]
  assert _FakeServing.requests == [('/v1/models/tiny:predict', 'serving_default')]
  from PIL import Image
  local = served(image_bytes=tf.constant([example.png_bytes(IMAGE)]))['semantic'].numpy()[0]
  np.testing.assert_array_equal(np.asarray(Image.open(out / 'c.png')), local)


def test_export_refuses_an_existing_version_and_a_mismatched_checkpoint(exported):
  base = ['--filter_multiplier=2', '--num_classes=5', '--dataset=synthetic',
          f'--export_dir={exported["root"] / "serving"}', '--model_name=tiny']
  result = run_tool('export', f'--genotype={exported["genotype"]}', *base, '--version=1')
  assert result.returncode == 2 and 'version 1 already exists' in result.stderr
  result = run_tool('export', '--genotype=paper', *base, f'--checkpoint={exported["checkpoint"]}')
  assert result.returncode == 2
  assert 'does not match this model' in result.stderr and 'in the checkpoint' in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
  assert sorted(os.listdir(exported['root'] / 'serving' / 'tiny')) == ['1']


@pytest.mark.slow
def test_export_tool_in_bfloat16(exported):
  """--precision=bfloat16: model.json says so; the signatures answer in float32, close to the
  float32 export's logits (same weights)."""
  result = run_tool('export', f'--genotype={exported["genotype"]}', '--filter_multiplier=2',
                    '--num_classes=5', '--dataset=synthetic', '--model_name=tiny',
                    f'--checkpoint={exported["checkpoint"]}', '--precision=bfloat16',
                    f'--export_dir={exported["root"] / "bf16"}')
  assert result.returncode == 0, result.stderr[-3000:]
  path = str(exported['root'] / 'bf16' / 'tiny' / '1')
  with open(os.path.join(path, 'assets.extra', 'model.json')) as f:
    assert json.load(f)['precision'] == 'bfloat16'
  image = tf.constant(IMAGE[None], tf.float32)
  logits = {name: tf.saved_model.load(p).signatures['predict_tensor'](images=image)['logits']
            for name, p in (('bfloat16', path), ('float32', exported['path']))}
  assert logits['bfloat16'].dtype == tf.float32
  np.testing.assert_allclose(logits['bfloat16'], logits['float32'], atol=0.1)


def test_next_version():
  assert export.next_version('/nonexistent') == 1


def test_predict_tool_grpc_client(served, tmp_path):
  """TF Serving's gRPC PredictionService, answered by the SavedModel through the real protos."""
  from concurrent import futures
  import grpc
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  seen = []

  class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):  # noqa: N802 (the service's naming)
      seen.append((request.model_spec.name, request.model_spec.signature_name))
      batch = tf.make_ndarray(request.inputs['image_bytes'])
      out = served(image_bytes=tf.constant(batch))
      response = predict_pb2.PredictResponse()
      for key, value in out.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
      return response

  server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
  port = server.add_insecure_port('127.0.0.1:0')
  server.start()
  try:
    image = tmp_path / 'd.png'
    image.write_bytes(example.png_bytes(IMAGE))
    result = run_tool('predict', f'--server=127.0.0.1:{port}', '--protocol=grpc',
                      '--model_name=tiny', f'--input={image}', f'--output_dir={tmp_path / "out"}')
  finally:
    server.stop(0)
  assert result.returncode == 0, result.stderr[-3000:]
  assert seen == [('tiny', 'serving_default')]
  from PIL import Image
  local = served(image_bytes=tf.constant([example.png_bytes(IMAGE)]))['semantic'].numpy()[0]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'out' / 'd.png')), local)
