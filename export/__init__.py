"""The export stage: PyTorch architectures -> ONNX files + manifests in the model store."""
