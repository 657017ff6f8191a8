"""Readers that turn model files into the SNN IR."""
