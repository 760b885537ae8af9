"""Import-only stand-in for torchvision in the peers venv (benchmarks/peers).

The package registry's torchvision wheels are CUDA builds that cannot load beside the
CPU-only torch wheel used here, and CAREamics imports torchvision at import time for
code the benchmark never runs (its LVAE models and model-zoo export). This package lets
``import careamics`` succeed; any torchvision function that is actually called raises.
"""

__version__ = "0.28.0+n2vstub"
