"""The command line, one module per group of commands; `python -m facecomp` assembles them."""
