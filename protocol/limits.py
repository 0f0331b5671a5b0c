"""The sizes a key may name (docs/design.md section 3): items, classes and image shape.

Apart from :mod:`wmark.protocol.keys` so that code checking a model against them
(a model answers a key's queries) need not import the cryptography behind keys:
the model-size refusal runs before anything heavy is imported (docs/design.md section 5).
"""

MAX_ITEMS = 10_000
MAX_CLASSES = 100_000
MAX_CHANNELS = 4
MAX_SIDE = 512
