"""The architecture as data: search space, genotype, decoding. Pure Python + NumPy (no TF graphs)."""
