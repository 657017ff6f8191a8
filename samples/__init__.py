"""The embedded sample: scikit-learn digits and two sample SNNs in the SNN-ONNX profile."""
