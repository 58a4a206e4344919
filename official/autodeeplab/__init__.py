"""Auto-DeepLab (Liu et al., CVPR 2019) in TensorFlow 2 / Keras 3.

Sub-packages follow the data flow: `data` (datasets to batches), `modeling` (the search supernet and
the retrain network), `search` (genotype, decoding, search-space accounting), `training` (loops),
`utils` (complexity, visualisation). Nothing here parses flags; the binaries live in `tools/`.
"""
