"""Reading a dataset's image files as they are: PNG and JPEG, TIFF (single page), 8 or 16 bits,
grey, RGB, RGBA or N bands, each size read from the file's header before anything is decoded.

Pillow reads 8-bit PNG and JPEG; it reduces 16-bit colour PNGs to 8 bits and cannot read
multi-band TIFF, so 16-bit PNGs go through TensorFlow's decoder (`decode_png` with uint16) and
TIFF through `tifffile`. A PNG's alpha channel (RGBA, grey + alpha) is dropped: transparency is
not image content to segment. A TIFF keeps all its bands (a 4-band TIFF is 4 channels).
`conform` brings an array to the dataset's `datasets.ImageSpec` (grey to RGB where the spec asks
for 3 channels), refusing what cannot be made to agree, naming the file.
"""
from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from official.autodeeplab.errors import UserInputError

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')
ACCEPTED = 'PNG, JPEG or single-page TIFF, 8 or 16 bits'
# A decompression bomb is refused from its header: more pixels than any image a dataset needs.
MAX_PIXELS = 1 << 28
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # PNG colour type -> channels as stored


@dataclasses.dataclass(frozen=True)
class Info:
  """An image file's header: size, channels (as stored, alpha included), bits per sample."""
  format: str
  height: int
  width: int
  channels: int
  bit_depth: int
  plain_rgb: bool = False  # an 8-bit RGB JPEG or PNG (no palette, no alpha): kept as it is

  @property
  def stored_channels(self) -> int:
    """Channels `read` returns: a PNG's or JPEG's alpha dropped."""
    if self.format in ('PNG', 'JPEG') and self.channels in (2, 4):
      return self.channels - 1
    return self.channels


def probe(path: str) -> Info:
  """The header of an image file, nothing decoded; an unsupported, multi-page or oversized file
  is a one-line error naming it."""
  try:
    with open(path, 'rb') as f:
      head = f.read(32)
  except OSError as e:
    raise UserInputError(f'{path}: cannot read it ({e.strerror})') from None
  if head.startswith(_PNG_SIGNATURE):
    info = _png_header(head, path)
  elif head[:4] in (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+'):
    info = _tiff_header(path)
  else:
    info = _pillow_header(path)
  if info.height * info.width > MAX_PIXELS:
    raise UserInputError(f'{path}: {info.width}x{info.height} pixels, more than the {MAX_PIXELS} '
                         'an image may have (read from its header; nothing was decoded)')
  if info.bit_depth not in (8, 16):
    raise UserInputError(f'{path}: {info.bit_depth}-bit samples; expected {ACCEPTED}')
  return info


def _png_header(head: bytes, path: str) -> Info:
  if len(head) < 26 or head[12:16] != b'IHDR':
    raise UserInputError(f'{path}: a PNG without a valid header (truncated?)')
  width, height, bit_depth, colour_type = struct.unpack('>IIBB', head[16:26])
  if colour_type not in _PNG_CHANNELS:
    raise UserInputError(f'{path}: PNG colour type {colour_type} is not a valid one')
  # Palette PNGs store indices of up to 8 bits; their colours are 8-bit RGB.
  depth = 8 if colour_type == 3 or bit_depth < 8 else bit_depth
  return Info('PNG', height, width, _PNG_CHANNELS[colour_type], depth,
              plain_rgb=colour_type == 2 and depth == 8)


def _tiff_header(path: str) -> Info:
  import tifffile
  try:
    with tifffile.TiffFile(path) as tif:
      if len(tif.pages) > 1:
        raise UserInputError(f'{path}: a TIFF of {len(tif.pages)} pages; one image per file '
                             '(save each page as its own file)')
      page = tif.pages[0]
      shape, dtype = page.shape, np.dtype(page.dtype)
      samples_first = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and len(shape) == 3
  except UserInputError:
    raise
  except Exception as e:  # tifffile raises many types for damaged files
    raise UserInputError(f'{path}: not a readable TIFF ({type(e).__name__}: {e})') from None
  if dtype not in (np.uint8, np.uint16):
    raise UserInputError(f'{path}: a TIFF of {dtype} samples; expected {ACCEPTED}')
  if len(shape) == 2:
    height, width, channels = *shape, 1
  elif len(shape) == 3:
    height, width, channels = (shape[1], shape[2], shape[0]) if samples_first else shape
  else:
    raise UserInputError(f'{path}: a TIFF of shape {shape}; expected height x width [x bands]')
  return Info('TIFF', height, width, channels, dtype.itemsize * 8)


def _pillow_header(path: str) -> Info:
  from PIL import Image
  try:
    with Image.open(path) as image:
      image_format, mode, (width, height) = image.format, image.mode, image.size
  except (OSError, SyntaxError):
    raise UserInputError(f'{path}: not an image this converter reads (expected '
                         f'{ACCEPTED})') from None
  if image_format != 'JPEG':
    raise UserInputError(f'{path}: a {image_format} image; expected {ACCEPTED}')
  channels = {'L': 1, 'RGB': 3, 'CMYK': 3, 'YCbCr': 3}.get(mode)
  if channels is None:
    raise UserInputError(f'{path}: a {mode} JPEG; expected grey or colour')
  return Info('JPEG', height, width, channels, 8, plain_rgb=mode == 'RGB')


def read(path: str, info: Info | None = None) -> np.ndarray:
  """The image as [H, W, C] uint8 or uint16 (`Info.stored_channels` channels)."""
  info = info or probe(path)
  try:
    if info.format == 'TIFF':
      import tifffile
      array = tifffile.imread(path)
      if array.ndim == 3 and array.shape[0] == info.channels and array.shape[-1] != info.channels:
        array = np.moveaxis(array, 0, -1)  # planar (bands first) storage
    elif info.format == 'PNG' and info.bit_depth == 16:
      import tensorflow as tf
      with open(path, 'rb') as f:
        array = tf.io.decode_png(f.read(), dtype=tf.uint16).numpy()
    else:
      from PIL import Image
      with Image.open(path) as image:
        image.load()
        if image.mode in ('P', 'CMYK', 'YCbCr', 'RGBA'):
          image = image.convert('RGB')
        elif image.mode in ('LA', '1'):
          image = image.convert('L')
        elif image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
          image = image.convert('I;16') if image.mode != 'I;16' else image
        array = np.asarray(image)
  except UserInputError:
    raise
  except Exception as e:  # decoders raise many types for damaged files
    raise UserInputError(f'{path}: corrupt or truncated image ({type(e).__name__}: {e})') from None
  if array.ndim == 2:
    array = array[..., np.newaxis]
  if info.format == 'PNG' and array.shape[-1] in (2, 4):
    array = array[..., :-1]  # alpha
  dtype = np.uint16 if info.bit_depth == 16 else np.uint8
  return np.ascontiguousarray(array.astype(dtype, copy=False))


def conform(array: np.ndarray, image, path: str) -> np.ndarray:
  """`array` as the dataset's images are (`image`: a `datasets.ImageSpec`): a grey image
  repeated to 3 channels where the spec has 3; another channel count or bit depth is refused."""
  depth = array.dtype.itemsize * 8
  if depth != image.bit_depth:
    raise UserInputError(f'{path}: {depth}-bit, the dataset\'s images are {image.bit_depth}-bit '
                         '("image": {"bit_depth": ...} in dataset.json, or the first image)')
  channels = array.shape[-1]
  if channels == image.channels:
    return array
  if channels == 1 and image.channels == 3:
    return np.repeat(array, 3, axis=-1)
  raise UserInputError(f'{path}: {channels} channel(s), the dataset\'s images have '
                       f'{image.channels} ("image": {{"channels": ...}} in dataset.json, or the '
                       'first image)')


def describe(path: str) -> str:
  """'PNG 16-bit 1 channel' for messages."""
  info = probe(path)
  return f'{info.format} {info.bit_depth}-bit {info.stored_channels} channel(s)'


def has_image_extension(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in EXTENSIONS
