"""Tap records: storing validators' batches exactly once and knowing which sequences are held."""
