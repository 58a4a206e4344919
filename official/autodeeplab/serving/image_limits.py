"""How much an encoded image will cost to decode, read from its header in the graph, so that a
request is refused before the decoder allocates anything.

Why: TensorFlow's decoders allocate the output from the header and only then read the pixels; a
0.7 MB PNG whose IHDR says 16000 x 16000 makes `decode_image` allocate 768 MB before it finds
anything wrong, and a few such requests take a model server down. Trusted image services bound the
work from the header first (Pillow's MAX_IMAGE_PIXELS); this module does the same with TensorFlow
ops, so the checks live inside the SavedModel that TF Serving runs.

What each format's header gives (all offsets as the decoders in TensorFlow read them):
* PNG: IHDR is the first chunk; width and height are big-endian 32-bit at bytes 16 and 20. A PNG
  must end with its IEND chunk: one that does not is truncated.
* JPEG: `tf.image.extract_jpeg_shape` reads the SOF marker without decoding; the end-of-image
  marker (FF D9) must be among the last bytes.
* GIF: the logical screen (little-endian 16-bit at bytes 6 and 8) is what each frame is decoded
  to, and TensorFlow's GIF decoder reads every frame even when only the first is returned; the
  frames are counted by walking the block structure (image descriptors, extensions, sub-blocks), so
  an animation costs frames x screen pixels, and a frame's own descriptor is bounded too.
* BMP: width and height are little-endian 32-bit at bytes 18 and 22 (a negative height is a
  top-down image); TensorFlow's BMP decoder requires the file to hold every pixel, so a BMP cannot
  be a bomb, but its size is still bounded.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from official.autodeeplab.modeling import sizes

MAX_PIXELS = sizes.MAX_IMAGE_PIXELS
MAX_REQUEST_PIXELS = sizes.MAX_REQUEST_PIXELS
# A GIF's blocks and data sub-blocks are walked one per loop iteration; encoders write 255-byte
# sub-blocks (a 25 MB GIF has 100000), and a file made of tiny blocks is refused, not walked.
MAX_GIF_BLOCKS = 100_000
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_HEAD = 64  # bytes of header read for the fixed-offset fields
_JPEG_TAIL = 64  # the end-of-image marker may be followed by a little padding


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one request may cost: the longest side, the decoded pixels of one image (frames x
  pixels for an animated GIF) and of all the request's images together."""
  max_side: int = sizes.MAX_IMAGE_SIDE
  max_pixels: int = MAX_PIXELS
  max_request_pixels: int = MAX_REQUEST_PIXELS

  def __post_init__(self):
    for name in ('max_side', 'max_pixels', 'max_request_pixels'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'{name}={getattr(self, name)}: must be a positive integer')
    if self.max_request_pixels < self.max_pixels:
      raise ValueError(f'max_request_pixels={self.max_request_pixels}: must be at least '
                       f'max_pixels={self.max_pixels} (a request holds at least one image)')


def _bytes(data, start: int, length: int):
  """`length` bytes of `data` from `start` as int64 [length], zeros past its end."""
  piece = tf.strings.substr(data, start, length)
  padded = tf.strings.substr(tf.strings.join([piece, b'\0' * length]), 0, length)
  return tf.reshape(tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64), [length])


def _big_endian(b):
  return tf.reduce_sum(b * tf.constant([1 << (8 * i) for i in reversed(range(4))], tf.int64))


def _little_endian(b):
  weights = tf.constant([1 << (8 * i) for i in range(b.shape[0])], tf.int64)
  return tf.reduce_sum(b * weights)


def _text(*parts):
  """A message from Python strings and scalar tensors (numbers or strings), as one string tensor:
  tf.strings.format would quote the string tensors."""
  parts = [p if isinstance(p, str) else tf.convert_to_tensor(p) for p in parts]
  return tf.strings.join([p if isinstance(p, str) or p.dtype == tf.string else
                          tf.strings.as_string(p) for p in parts])


def _kind(data):
  """0 PNG, 1 JPEG, 2 GIF, 3 BMP, -1 anything else."""
  png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_SIGNATURE)
  gif = tf.reduce_any(tf.equal(tf.strings.substr(data, 0, 6), [b'GIF87a', b'GIF89a']))
  bmp = tf.equal(tf.strings.substr(data, 0, 2), b'BM')
  return tf.where(png, 0, tf.where(tf.io.is_jpeg(data), 1, tf.where(gif, 2, tf.where(bmp, 3, -1))))


def _skip_sub_blocks(padded, pos, budget):
  """(the position after the run of data sub-blocks at `pos`, sub-blocks walked): each is a size
  byte and that many bytes, ended by a 0 size byte; `padded` holds the file and 257 zeros, so a
  truncated run ends in them. At most `budget` are walked. The loop body is three ops: this walk
  is the cost of a GIF's check."""
  _, end, walked = tf.while_loop(
      lambda size, *_: size > 0,
      lambda size, p, k: (tf.gather(padded, p + 1 + size), p + 1 + size, k + 1),
      (tf.gather(padded, pos), pos, 0), maximum_iterations=budget)
  return end + 1, walked


def _gif_frames(data, screen_pixels):
  """(frames, pixels the decoder fills, largest frame side, blocks walked) of a GIF: every image
  descriptor counts max(screen, its own width x height) pixels."""
  raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
  n = tf.size(raw)
  padded = tf.concat([raw, tf.zeros([257], tf.int32)], 0)
  head = _bytes(data, 0, 13)
  packed = tf.cast(head[10], tf.int32)

  def colour_table(flags):  # 3 x 2^(size + 1) bytes when the flag's top bit is set
    return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(1, tf.bitwise.bitwise_and(flags, 7)
                                                            + 1), 0)

  def at(pos):
    return tf.cast(tf.gather(raw, tf.clip_by_value(pos, 0, n - 1)), tf.int64)

  def body(pos, frames, pixels, side, blocks):
    # 0x21: an extension (label byte, then data sub-blocks); 0x2C: an image descriptor (9 bytes,
    # a local colour table, the LZW code size, then sub-blocks); anything else (0x3B) ends it.
    first = at(pos)
    width, height = at(pos + 5) + 256 * at(pos + 6), at(pos + 7) + 256 * at(pos + 8)
    image, extension = tf.equal(first, 0x2C), tf.equal(first, 0x21)
    chain = tf.where(image, pos + 11 + colour_table(tf.cast(at(pos + 9), tf.int32)), pos + 2)
    after, walked = _skip_sub_blocks(padded, tf.minimum(chain, n),
                                     tf.where(image | extension, MAX_GIF_BLOCKS - blocks, 0))
    frames += tf.cast(image, tf.int64)
    pixels += tf.where(image, tf.maximum(screen_pixels, width * height), 0)
    side = tf.where(image, tf.maximum(side, tf.maximum(width, height)), side)
    return tf.where(image | extension, after, n), frames, pixels, side, blocks + 1 + walked

  zero = tf.constant(0, tf.int64)
  _, frames, pixels, side, blocks = tf.while_loop(
      lambda pos, *state: (pos < n) & (state[-1] < MAX_GIF_BLOCKS), body,
      (13 + colour_table(packed), zero, zero, zero, 0))
  return frames, pixels, side, blocks


def header_size(data, index):
  """(height, width, frames, decoded pixels, largest side of any frame) of one encoded image,
  int64, from its header alone (and a GIF's block structure); raises
  InvalidArgument (naming `image_bytes[index]`) for bytes that are no PNG / JPEG / GIF / BMP or
  whose structure is broken (too short, a PNG without IEND, a JPEG without its end marker)."""
  length = tf.strings.length(data)
  kind = _kind(data)
  head = _bytes(data, 0, _HEAD)
  name = _text('image_bytes[', index, ']: ')

  def fail(condition, *message):
    return tf.debugging.Assert(condition, [_text(name, *message)])

  checks = [fail(kind >= 0, 'not a PNG, JPEG, GIF or BMP image (', length, ' bytes)')]
  with tf.control_dependencies(checks):
    kind = tf.identity(kind)
  # Structure, before any field is trusted.
  kind = tf.maximum(kind, 0)
  minimum = tf.gather([8 + 25 + 12, 4, 13 + 1, 54], kind)
  png_end = tf.strings.substr(data, tf.maximum(length - 8, 0), 4)
  jpeg_tail = _bytes(data, tf.maximum(length - _JPEG_TAIL, 0), _JPEG_TAIL)
  jpeg_end = tf.reduce_any(tf.equal(jpeg_tail[:-1], 0xFF) & tf.equal(jpeg_tail[1:], 0xD9))
  with tf.control_dependencies(checks):  # one failure reported: the first that applies
    checks = [fail(length >= minimum, 'a ', tf.gather(['PNG', 'JPEG', 'GIF', 'BMP'], kind),
                   ' of ', length, ' bytes is shorter than its header (at least ', minimum, ')')]
  with tf.control_dependencies(checks):
    ihdr = tf.reduce_all(tf.equal(head[12:16], [ord(c) for c in 'IHDR']))
    checks = [
        fail(tf.not_equal(kind, 0) | ihdr, 'PNG without its IHDR header chunk'),
        fail(tf.not_equal(kind, 0) | tf.equal(png_end, b'IEND'),
             'truncated PNG: it does not end with the IEND chunk (', length, ' bytes)'),
        fail(tf.not_equal(kind, 1) | jpeg_end,
             'truncated JPEG: no end-of-image marker (FF D9) at its end (', length, ' bytes)'),
    ]
  with tf.control_dependencies(checks):
    kind = tf.identity(kind)

  one = tf.constant(1, tf.int64)

  def png():
    height, width = _big_endian(head[20:24]), _big_endian(head[16:20])
    return height, width, one, height * width, tf.maximum(height, width)

  def jpeg():
    shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
    return shape[0], shape[1], one, shape[0] * shape[1], tf.reduce_max(shape[:2])

  def gif():
    width, height = _little_endian(head[6:8]), _little_endian(head[8:10])
    frames, pixels, side, steps = _gif_frames(data, height * width)
    check = fail(steps < MAX_GIF_BLOCKS, f'GIF of {MAX_GIF_BLOCKS} blocks or more (sub-blocks '
                 'of its image data included); re-encode it')
    with tf.control_dependencies([check]):
      side = tf.maximum(side, tf.maximum(height, width))
    return height, width, tf.maximum(frames, 1), tf.maximum(pixels, height * width), side

  def bmp():
    signed = [_little_endian(head[22:26]), _little_endian(head[18:22])]
    height, width = (tf.abs(tf.where(v >= 1 << 31, v - (1 << 32), v)) for v in signed)
    return height, width, one, height * width, tf.maximum(height, width)

  return tf.switch_case(kind, [png, jpeg, gif, bmp])


def checked_size(data, index, limits: Limits):
  """header_size, with the image refused (InvalidArgument naming `image_bytes[index]` and its
  size) when a side or its decoded pixels exceed `limits`; returns (height, width, pixels)."""
  height, width, frames, pixels, side = header_size(data, index)
  size = _text(height, 'x', width, ' pixels')
  what = _text('image_bytes[', index, ']: ', tf.where(
      frames > 1, _text('animated GIF of ', frames, ' frames of ', size), _text('image of ', size)))
  checks = [tf.debugging.Assert(side <= limits.max_side, [_text(
      what, f'; height and width must be at most {limits.max_side}')])]
  with tf.control_dependencies(checks):
    checks = [tf.debugging.Assert(pixels <= limits.max_pixels, [_text(
        what, ' (', pixels, f' pixels to decode); at most {limits.max_pixels} pixels are '
        'decoded per image')])]
  with tf.control_dependencies(checks):
    return tf.identity(height), tf.identity(width), tf.identity(pixels)


def check_request(pixels, limits: Limits):
  """An assertion that a request's images decode to at most `limits.max_request_pixels` pixels
  together (`pixels`: int64 [N], from checked_size)."""
  total = tf.reduce_sum(pixels)
  return tf.debugging.Assert(total <= limits.max_request_pixels, [_text(
      'image_bytes: the request holds ', tf.size(pixels), ' images that decode to ', total,
      f' pixels; at most {limits.max_request_pixels} per request (send fewer or smaller images)')])
