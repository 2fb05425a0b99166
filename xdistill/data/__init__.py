"""The data layer: readers (PAN-X, CoNLL, CSV, JSON lines), the language registry, task files,
per-group splits, word splitting, batching, and the types every other layer shares
(:mod:`xdistill.data.types`). It imports nothing from the layers above it."""
