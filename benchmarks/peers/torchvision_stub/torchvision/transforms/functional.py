"""Stand-in ``torchvision.transforms.functional`` (see the package docstring)."""

from torchvision._missing import placeholder


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return placeholder(__name__, name)
