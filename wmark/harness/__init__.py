"""The adversary harness: attackers and the real programs they face.

The top ("commands") layer of the import direction (docs/design.md section 1):
it may import anything in the library.  The tests in ``tests/adversarial``
assert each scenario's outcome and ``benchmarks/false_claims.py`` tabulates
the same scenarios with larger parameters, so both import it from here and a
report cannot drift from what is tested.
"""
