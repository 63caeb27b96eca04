"""Graph memory adapters. graphiti-core reads these at import: set before any adapter imports it."""

import os

os.environ.setdefault("GRAPHITI_TELEMETRY_ENABLED", "false")
os.environ.setdefault("EMBEDDING_DIM", "256")  # the hashing embedder's size (graphiti_model.DIM)
