"""The fault catalogue: real backprop bugs applied to scratch in memory, to prove the oracle.

``catalogue`` lists the faults and the tensor each must be caught at; ``patching`` applies
one to scratch without touching a file; ``runner`` runs the catalogue through the oracle.
"""
