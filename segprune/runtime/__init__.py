"""Running models where users deploy them: export to ONNX, latency on ONNX Runtime."""
