"""The placeholder every stand-in module hands out: it raises when used."""


def placeholder(module: str, name: str):
    """A class standing for ``module.name``; creating or calling it raises."""

    def unavailable(*args, **kwargs):
        raise NotImplementedError(
            f"{module}.{name} is not available in the peers venv (torchvision is an "
            f"import-only stand-in there; the CAREamics N2V benchmark never calls it)")

    return type(name, (), {"__new__": unavailable, "__call__": unavailable})
