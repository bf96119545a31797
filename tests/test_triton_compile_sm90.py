"""Every Triton kernel of the package (BPSN forward and backward, the S4D scan, and the
diagonal scan of S5) compiles for a GPU (sm_90) without one: Triton's compiler and the
``ptxas`` its wheel ships run on any machine, so this checks the very code path a GPU user
takes up to the binary (the interpreter tests check the numbers), and that no multiply-add is
fused (the CPU kernel's ``-ffp-contract=off``).  Skipped without ``triton`` and under
``TRITON_INTERPRET=1`` (where ``triton.jit`` gives interpreted functions instead).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1",
    reason="under TRITON_INTERPRET=1 the kernels are interpreted, not compiled",
)


_FLOATS = {"k0", "sg_a", "sg_b"}  # BPSN's float options


def _signature(kernel, constexprs: dict) -> dict:
    """Pointers ``*fp32`` (the mask ``*u8``; BPSN's per-lane partial sums ``p_*``), BPSN's
    float options ``fp32``, the sizes ``i32`` unless given as constants."""
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr") or name.startswith("p_"):
            sig[name] = "*u8" if name == "mask_ptr" else "*fp32"
        else:
            sig[name] = "fp32" if name in _FLOATS else "i32"
    return sig


_BPSN_FWD = {"HAS_MASK": True, "FIRE_GE": True}
_BPSN_BWD = {**_BPSN_FWD, "HAS_G": True, "HAS_GM": False, "DETACH": True}


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
    # BPSN: every runaway rule (0 none, 1 refractory, 2 soft reset) and surrogate kind
    ("_bpsn_forward_kernel", {**_BPSN_FWD, "RUNAWAY": 0}),
    ("_bpsn_forward_kernel", {**_BPSN_FWD, "RUNAWAY": 1, "HAS_MASK": False}),
    ("_bpsn_forward_kernel", {**_BPSN_FWD, "RUNAWAY": 2, "FIRE_GE": False}),
    ("_bpsn_backward_kernel", {**_BPSN_BWD, "RUNAWAY": 0, "SG_KIND": 0}),
    ("_bpsn_backward_kernel", {**_BPSN_BWD, "RUNAWAY": 1, "SG_KIND": 1, "HAS_GM": True}),
    ("_bpsn_backward_kernel", {**_BPSN_BWD, "RUNAWAY": 2, "SG_KIND": 2, "DETACH": False}),
    ("_bpsn_backward_kernel", {**_BPSN_BWD, "RUNAWAY": 2, "SG_KIND": 3, "HAS_G": False}),
]


@pytest.mark.parametrize(("name", "constexprs"), CASES)
def test_triton_kernels_compile_for_sm90(name, constexprs):
    triton = pytest.importorskip("triton", reason="triton is not installed")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from bpsn_ext.kernels import triton_bpsn, triton_diagonal_scan, triton_ssm_scan

    if name.startswith("_bpsn"):
        kernel = getattr(triton_bpsn, name)
        constexprs = {**constexprs, "BLOCK": triton_bpsn.BLOCK}
        warps = triton_bpsn.NUM_WARPS
    elif name.startswith("_diagonal"):
        kernel = getattr(triton_diagonal_scan, name)
        constexprs = {**constexprs, "BLOCK": triton_diagonal_scan._BLOCK}
        warps = 2  # as the launchers use
    else:
        kernel = getattr(triton_ssm_scan, name)
        constexprs = {**constexprs, "BLOCK_J": triton_ssm_scan._BLOCK_J}
        warps = 1 if name == "_scan_backward_kernel" else 2
    source = ASTSource(kernel, _signature(kernel, constexprs), constexprs=constexprs)
    options = {"num_warps": warps, "enable_fp_fusion": False}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    assert len(compiled.asm["cubin"]) > 0
    assert f".visible .entry {name}" in compiled.asm["ptx"]
    # rounded after every multiply and add, like the torch reference (the launchers pass
    # enable_fp_fusion=False: with fusion the membrane update becomes an fma and a spike at
    # the threshold can flip)
    assert "fma.rn" not in compiled.asm["ptx"]
