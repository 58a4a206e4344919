"""absl binaries, one per stage of the data flow (run as `python -m tools.<name>`)."""
