"""Imported first by every benchmark script.

Run as ``python benchmarks/NAME.py``, a script has this folder first on
``sys.path``, where ``protocol.py`` (the protocol benchmark, named as its issue
asks) would shadow the ``protocol`` package the benchmarks measure.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))
