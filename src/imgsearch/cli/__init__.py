"""Command-line entry points: thin Hydra / argparse wrappers over the library functions."""
