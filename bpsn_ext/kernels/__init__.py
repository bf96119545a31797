"""Optional CUDA providers.  Imported only for CUDA tensors, never on CPU."""
