"""emit: scikit-learn estimators to ONNX graphs of NPU-friendly ops, and to .rknn models."""

__version__ = "0.1.0"
