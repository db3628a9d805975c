"""Active-learning strategies (guarded random, diffusion uncertainty)."""
