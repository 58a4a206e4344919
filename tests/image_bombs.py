"""Encoded images whose headers claim far more pixels than their bytes hold, in each format the
exported model accepts: what a hostile client sends to a model server (the serving tests and
benchmarks/serving_limits.py use them).

The PNG is a real decompression bomb (its IDAT inflates to every row of the claimed size); the
others carry a real header and a token of pixel data, which is all a decoder reads before it
allocates the output.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def png(height: int, width: int) -> bytes:
  """An RGB PNG of height x width black pixels: every row deflated (about 1/1000 of the decoded
  size on disk, so 16000 x 16000 is a 0.7 MB file that decodes to 768 MB)."""
  compressor = zlib.compressobj(9)
  rows = (b'\0' * (1 + 3 * width)) * 64  # filter byte + RGB per row
  deflated = [compressor.compress(rows) for _ in range(height // 64)]
  deflated.append(compressor.compress((b'\0' * (1 + 3 * width)) * (height % 64)))
  deflated.append(compressor.flush())
  header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) + _chunk(b'IDAT', b''.join(deflated)) +
          _chunk(b'IEND', b''))


def jpeg(height: int, width: int) -> bytes:
  """A small baseline JPEG whose start-of-frame marker says height x width."""
  buffer = io.BytesIO()
  Image.fromarray(np.full([16, 16, 3], 128, np.uint8)).save(buffer, format='JPEG')
  data = bytearray(buffer.getvalue())
  sof = data.index(b'\xff\xc0')  # SOF0: length (2), precision (1), height (2), width (2)
  data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
  return bytes(data)


def gif(height: int, width: int, frames: int = 1) -> bytes:
  """A GIF whose logical screen is height x width, with `frames` full-screen image descriptors
  (each with a minimal LZW stream): an animation costs frames x the screen."""
  data = bytearray(b'GIF89a' + struct.pack('<HHBBB', width, height, 0x80, 0, 0))
  data += b'\0\0\0\xff\xff\xff'  # a 2-colour global table
  for _ in range(frames):
    data += b'\x21\xf9\x04\x04\x0a\x00\x00\x00'  # graphic control extension (a 0.1 s delay)
    data += b'\x2c' + struct.pack('<HHHHB', 0, 0, width, height, 0)
    data += b'\x02\x02\x44\x01\x00'  # LZW minimum code size 2, one sub-block: clear, 0, end
  return bytes(data + b'\x3b')


def bmp(height: int, width: int) -> bytes:
  """The 54-byte header of a 24-bit BMP of height x width, and a few bytes of pixels."""
  row = (3 * width + 3) // 4 * 4
  file_header = b'BM' + struct.pack('<IHHI', 54 + row * height, 0, 0, 54)
  info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, row * height, 2835, 2835, 0, 0)
  return file_header + info + b'\0' * 64


FORMATS = {'png': png, 'jpeg': jpeg, 'gif': gif, 'bmp': bmp}
