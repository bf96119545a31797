"""Plain helpers below every other layer: atomic files, text tables, argument types
and the argument errors a library raises for the command line to name in flags.

Nothing here imports torch or a `bpsn_ext` module outside `util`.
"""
