"""An example headrace plugin package (see the README)."""
