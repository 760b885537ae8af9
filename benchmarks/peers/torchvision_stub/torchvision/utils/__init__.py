"""Stand-in ``torchvision.utils`` (see the package docstring): names resolve, uses raise."""

from torchvision._missing import placeholder


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return placeholder(__name__, name)
