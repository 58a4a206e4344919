"""serving/image_limits: sizes read from headers agree with the decoders, animations are counted
frame by frame, and limits are enforced per image and per request before decoding."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.autodeeplab.serving import export
from official.autodeeplab.serving import image_limits
from tests import image_bombs

RNG = np.random.default_rng(11)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _header(data):
  return image_limits.header_size(data, 0)


def _encode(image, format_, **options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=format_, **options)
  return buffer.getvalue()


@pytest.mark.parametrize('format_,mode', [('PNG', 'RGB'), ('PNG', 'L'), ('PNG', 'RGBA'),
                                          ('JPEG', 'RGB'), ('JPEG', 'L'), ('GIF', 'P'),
                                          ('BMP', 'RGB')])
def test_header_size_matches_the_decoder(format_, mode):
  image = Image.fromarray(RNG.integers(0, 256, [37, 53, 3], dtype=np.uint8)).convert(mode)
  data = _encode(image, format_)
  height, width, frames, pixels, side = (int(v) for v in _header(data))
  decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
  assert (height, width) == tuple(decoded.shape[:2]) == (37, 53)
  assert (frames, pixels, side) == (1, 37 * 53, 53)


def test_animated_gif_counts_every_frame():
  frames = [Image.fromarray(RNG.integers(0, 256, [30, 40, 3], dtype=np.uint8)) for _ in range(5)]
  data = _encode(frames[0], 'GIF', save_all=True, append_images=frames[1:], duration=100)
  assert int(tf.shape(tf.io.decode_gif(data))[0]) == 5
  assert [int(v) for v in _header(data)] == [30, 40, 5, 5 * 30 * 40, 40]
  assert [int(v) for v in _header(image_bombs.gif(100, 200, frames=7))] == [
      100, 200, 7, 7 * 100 * 200, 200]


def test_bomb_headers_are_read_without_decoding():
  for name, make in image_bombs.FORMATS.items():
    if name != 'png':  # the PNG bomb's 0.7 MB are built once, by test_export
      assert [int(v) for v in _header(make(16000, 9000))][:2] == [16000, 9000], name


def test_limits_per_image_and_per_request():
  limits = image_limits.Limits(max_side=64, max_pixels=40 * 40, max_request_pixels=3000)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def check(batch):
    sizes = tf.map_fn(lambda i: tf.stack(image_limits.checked_size(batch[i], i, limits)),
                      tf.range(tf.size(batch)), fn_output_signature=tf.int64)
    with tf.control_dependencies([image_limits.check_request(sizes[:, 2], limits)]):
      return tf.identity(sizes)

  small = _encode(Image.new('RGB', (30, 30)), 'PNG')
  assert check(tf.constant([small, small, small])).numpy()[:, 2].tolist() == [900] * 3
  for batch, message in (
      ([small, _encode(Image.new('RGB', (65, 8)), 'PNG')],
       'image_bytes[1]: image of 8x65 pixels; height and width must be at most 64'),
      ([_encode(Image.new('RGB', (41, 40)), 'JPEG')],
       'image_bytes[0]: image of 40x41 pixels (1640 pixels to decode); at most 1600'),
      ([small] * 4, 'image_bytes: the request holds 4 images that decode to 3600 pixels; at most '
       '3000 per request')):
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
      check(tf.constant(batch))
    assert export.error_text(raised.value.message).startswith(message)
  with pytest.raises(ValueError, match='max_request_pixels=10: must be at least max_pixels'):
    image_limits.Limits(max_pixels=20, max_request_pixels=10)


def test_a_gif_of_tiny_blocks_is_refused_not_walked():
  """One-byte data sub-blocks would make the block walk as long as the file: capped."""
  blocks = b'\x02' + b'\x01\x00' * image_limits.MAX_GIF_BLOCKS + b'\x00'  # code size, data, end
  data = image_bombs.gif(10, 10)[:-6] + blocks + b'\x3b'
  assert [int(v) for v in _header(data[:1000] + b'\x00\x3b')] == [10, 10, 1, 100, 10]
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    _header(data)
  assert export.error_text(raised.value.message).startswith(
      f'image_bytes[0]: GIF of {image_limits.MAX_GIF_BLOCKS} blocks or more')
