"""The Triton scans' kernels (S4D, and the diagonal scan of S5) compile for a GPU (sm_90)
without one: Triton's compiler and the ``ptxas`` its wheel ships run on any machine, so this
checks the very code path a GPU user takes up to the binary (the interpreter tests check the
numbers).  Skipped without ``triton`` and under ``TRITON_INTERPRET=1`` (where ``triton.jit``
gives interpreted functions instead).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1",
    reason="under TRITON_INTERPRET=1 the kernels are interpreted, not compiled",
)


def _signature(kernel, constexprs: dict) -> dict:
    """Pointers ``*fp32`` (the mask ``*u8``), the sizes ``i32`` unless given as constants."""
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*u8" if name == "mask_ptr" else "*fp32"
        else:
            sig[name] = "i32"
    return sig


CASES = [
    ("_scan_forward_kernel", {"HAS_MASK": False, "HAS_X0": False, "REVERSE": False, "BLOCK_P": 16}),
    ("_scan_forward_kernel", {"HAS_MASK": True, "HAS_X0": True, "REVERSE": True, "BLOCK_P": 32}),
    # sizes of 1 arrive as constants (Triton specialises them)
    (
        "_scan_forward_kernel",
        {
            "HAS_MASK": True,
            "HAS_X0": False,
            "REVERSE": True,
            "BLOCK_P": 1,
            "N": 1,
            "H": 1,
            "P": 1,
            "T": 1,
        },
    ),  # fmt: skip
    ("_scan_backward_kernel", {"HAS_X0": False, "REVERSE": False}),
    ("_scan_backward_kernel", {"HAS_X0": True, "REVERSE": True, "N": 1, "P": 1, "T": 1}),
    ("_diagonal_forward_kernel", {"HAS_X0": True, "REVERSE": True}),
    ("_diagonal_backward_kernel", {"HAS_X0": False, "REVERSE": False}),
    ("_diagonal_backward_kernel", {"HAS_X0": True, "REVERSE": True, "N": 1, "P": 1, "T": 1}),
]


@pytest.mark.parametrize(("name", "constexprs"), CASES)
def test_triton_scan_kernels_compile_for_sm90(name, constexprs):
    triton = pytest.importorskip("triton", reason="triton is not installed")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from bpsn_ext.kernels import triton_diagonal_scan, triton_ssm_scan

    if name.startswith("_diagonal"):
        kernel = getattr(triton_diagonal_scan, name)
        constexprs = {**constexprs, "BLOCK": triton_diagonal_scan._BLOCK}
    else:
        kernel = getattr(triton_ssm_scan, name)
        constexprs = {**constexprs, "BLOCK_J": triton_ssm_scan._BLOCK_J}
    source = ASTSource(kernel, _signature(kernel, constexprs), constexprs=constexprs)
    warps = 1 if name == "_scan_backward_kernel" else 2
    options = {"num_warps": warps, "enable_fp_fusion": False}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert len(compiled.asm["cubin"]) > 0
    assert f".visible .entry {name}" in compiled.asm["ptx"]
