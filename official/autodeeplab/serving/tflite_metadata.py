"""LiteRT model metadata for MediaPipe Tasks' `ImageSegmenter`, written by MediaPipe's own
metadata writer (`mediapipe.tasks.python.metadata.metadata_writers`).

What MediaPipe reads: the model's name, version and description; the input image (an 8-bit RGB
tensor here, normalised inside the graph, so the metadata's normalisation is the identity: mean 0,
std 1); the class labels as an associated file of the output tensor; the activation of the
output (SOFTMAX: the per-class scores are logits, so its confidence masks are probabilities). A
model MediaPipe reads has exactly one output, the per-class scores [1, H, W, classes] (with two
outputs it takes the first for a matting quality score), so the class ids are the argmax of it.

mediapipe 1.2.x's wheels ship the writer but not the compiled helper it imports to stamp the
metadata's minimum parser version (`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`);
`_install_version_helper` supplies it, computing the version as MediaPipe's `metadata_version.cc`
does for the fields this export can contain (custom metadata: 1.5.0; process units: 1.1.0; tensor
groups: 1.2.0; else 1.0.0), only where the import is missing.
"""
from __future__ import annotations

import sys
import types

from official.autodeeplab.errors import UserInputError

_HELPER = 'mediapipe.tasks.cc.metadata.python._pywrap_metadata_version'


def describable(image) -> str | None:
  """Why MediaPipe cannot describe a model of these images (`datasets.ImageSpec`), or None."""
  if image.channels != 3 or image.bit_depth != 8:
    return (f'MediaPipe\'s image segmenter takes 8-bit RGB images; this model takes '
            f'{image.bit_depth}-bit {image.channels}-channel ones')
  return None


def _minimum_parser_version(buffer: bytes) -> str:
  from mediapipe.tasks.metadata import metadata_schema_py_generated as schema
  metadata = schema.ModelMetadataT.InitFromObj(
      schema.ModelMetadata.GetRootAsModelMetadata(bytearray(buffer), 0))
  version = (1, 0, 0)
  for subgraph in metadata.subgraphMetadata or []:
    if subgraph.customMetadata:
      version = max(version, (1, 5, 0))
    if subgraph.inputTensorGroups or subgraph.outputTensorGroups:
      version = max(version, (1, 2, 0))
    if subgraph.inputProcessUnits or subgraph.outputProcessUnits:
      version = max(version, (1, 1, 0))
  return '.'.join(map(str, version))


def _install_version_helper() -> None:
  """The missing compiled module (and the packages above it that are missing too), in
  `sys.modules`."""
  try:
    __import__(_HELPER)
    return
  except ImportError:
    pass
  parts = _HELPER.split('.')
  for depth in range(3, len(parts)):  # mediapipe.tasks exists; .cc and below do not
    name = '.'.join(parts[:depth])
    if name not in sys.modules:
      package = types.ModuleType(name)
      package.__path__ = []
      sys.modules[name] = package
      setattr(sys.modules['.'.join(parts[:depth - 1])], parts[depth - 1], package)
  helper = types.ModuleType(_HELPER)
  helper.GetMinimumMetadataParserVersion = _minimum_parser_version
  sys.modules[_HELPER] = helper
  setattr(sys.modules['.'.join(parts[:-1])], parts[-1], helper)


def add_metadata(model: bytes, name: str, version: str, description: str,
                 class_names: list[str]) -> bytes:
  """`model` (a LiteRT flatbuffer with one output, the per-class scores) with MediaPipe's image
  segmenter metadata and the labels file packed in."""
  try:
    _install_version_helper()
    from mediapipe.tasks.python.metadata.metadata_writers import image_segmenter
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
  except ImportError as e:
    raise UserInputError(f'LiteRT metadata for MediaPipe needs the mediapipe package ({e}); '
                         'pip install mediapipe (requirements.txt pins it)') from None
  writer = metadata_writer.MetadataWriter(bytearray(model))
  # (`add_general_info` takes no version: the general metadata set as it would set it)
  writer._general_md = metadata_info.GeneralMd(  # pylint: disable=protected-access
      name=name, version=version, description=description)
  writer.add_image_input([0.0], [1.0])  # the graph normalises: uint8 values go in as they are
  writer.add_custom_metadata(image_segmenter.ImageSegmenterOptionsMd(
      image_segmenter.Activation.SOFTMAX))
  writer.add_segmentation_output(labels=metadata_writer.Labels().add(list(class_names)))
  populated, _ = writer.populate()
  del writer  # its __del__ removes a temporary folder: now, not at interpreter exit
  return bytes(populated)
