"""Running models where users deploy them: verified export (ONNX, OpenVINO IR, LiteRT; dynamic or fixed shape),
int8 post-training quantization, interleaved benchmarks, and per-layer latency tables per runtime and precision."""
