"""Writers that turn the SNN IR into model files."""
