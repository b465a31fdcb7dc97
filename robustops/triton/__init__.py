"""Triton kernels (GPU; tested on CPU tensors with TRITON_INTERPRET=1 set before import)."""
