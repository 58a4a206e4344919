"""Raw dataset trees (or generators) to images and train-id label maps."""
