"""Model sizes, the retrain network's fixed widths and defaults, and accepted input sizes (pure
Python: binaries validate flags with it before importing TensorFlow)."""
from __future__ import annotations

from official.autodeeplab.errors import UserInputError

# Auto-DeepLab-S / M / L: filter multiplier F (paper Table 2).
MODEL_SIZES = {'S': 20, 'M': 32, 'L': 48}
# The retrain defaults of Google's released code: L2 weight decay on conv kernels, BN decay and
# epsilon.
WEIGHT_DECAY = 4e-5
BATCH_NORM_MOMENTUM = 0.9997
BATCH_NORM_EPSILON = 1e-3
MIN_IMAGE_SIZE = 32  # every level (strides 4..32) then has at least one pixel
MAX_IMAGE_SIDE = 4096  # the largest side an export accepts (SavedModel requests, LiteRT inputs)
# What a served image may decode to (a 4096 x 4096 image is 48 MB of RGB; frames x pixels for an
# animated GIF) and all the images of one request together (serving/image_limits).
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
MAX_REQUEST_PIXELS = 4 * MAX_IMAGE_PIXELS


def resolve_filter_multiplier(model_size: str | None = None,
                              filter_multiplier: int | None = None) -> int:
  """F from --model_size=S|M|L or an explicit --filter_multiplier (which wins)."""
  if filter_multiplier is not None:
    if filter_multiplier < 1:
      raise UserInputError(f'filter_multiplier={filter_multiplier}: must be a positive integer')
    return filter_multiplier
  if model_size not in MODEL_SIZES:
    raise UserInputError(f'model_size={model_size}: expected one of S, M, L')
  return MODEL_SIZES[model_size]


def parse_image_size(text: str, name: str = 'image_size',
                     max_side: int | None = None) -> tuple[int, int]:
  """'HEIGHT,WIDTH' -> (height, width), each side at least MIN_IMAGE_SIZE (and at most
  `max_side`); errors name the setting `name`."""
  try:
    height, width = (int(x) for x in text.split(','))
  except (ValueError, AttributeError):
    raise UserInputError(f'{name}={text}: expected HEIGHT,WIDTH, e.g. 1024,2048') from None
  check_image_size(height, width, name, max_side)
  return height, width


def check_image_size(height: int, width: int, name: str = 'image_size',
                     max_side: int | None = None) -> None:
  if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
    raise UserInputError(f'{name}={height},{width}: height and width must be at least '
                         f'{MIN_IMAGE_SIZE} (any size from {MIN_IMAGE_SIZE} up is accepted: each '
                         'level halves it, rounding up)')
  if max_side is not None and max(height, width) > max_side:
    raise UserInputError(f'{name}={height},{width}: height and width must be at most {max_side}')
