"""Plain helpers below every other layer: atomic files, text tables, argument types.

Nothing here imports torch or another `bpsn_ext` module.
"""
