"""lbwire's comparison benchmarks (run with `python -m benchmarks`).

Nothing is imported here: worker processes import only their own client.
"""
