"""Kernel providers.  The CUDA ones (CuPy: ``cupy_bpsn``, ``cupy_ssm``) are imported only for CUDA
tensors, never on CPU; ``cpu_native`` (the compiled BPSN CPU kernel: ctypes, no GPU stack) serves
CPU tensors."""
