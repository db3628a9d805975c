"""Scoring methods (diffusion uncertainty)."""
