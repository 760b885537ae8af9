"""The command line's options turned into a validated config, and config errors named by
their option (``--depth``, not ``network.depth``); used by :mod:`.cli`."""

from __future__ import annotations

from pathlib import Path

from .errors import InputError


def config_from_options(config_file: Path | None, stored: dict | None = None, **opts):
    """Merge a stored recipe (``--resume``), a YAML config and the options that were given.

    Only values the user set (in the file or as options) are passed on, so method
    defaults still apply: ``--variant n2v2`` gets median replacement, ``structured`` a grid.
    """
    from .config import make_config, read_config_values

    base: dict = dict(stored or {})
    if stored and opts.get("variant") is not None:
        from .methods import method_class

        try:
            chosen = method_class(opts["variant"], opts.get("backbone")).name
        except ValueError as exc:
            raise InputError(f"--variant: {exc}") from None
        if chosen != stored.get("variant"):
            raise InputError(f"--resume: the checkpoint was made with a different config "
                             f"(variant {stored.get('variant')!r}, not {chosen!r}); leave "
                             f"out --variant to resume, or use --overwrite to start over")
    for key, value in (read_config_values(config_file) if config_file else {}).items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        base[key] = {**base[key], **value} if both else value
    changes: dict = {}
    nested = {"mask": {}, "network": {}, "noise_model": {}}
    masks = opts.pop("mask") or []
    mask_file = opts.pop("mask_file")
    for spec in masks:
        if spec in ("grid", "random"):
            nested["mask"]["pattern"] = spec
        elif spec.split(":")[0] in ("horizontal", "vertical", "depth", "box", "auto", "none"):
            nested["mask"]["struct"] = spec
        else:
            raise InputError(f"--mask: unknown mask {spec!r} (use random, grid, horizontal:N, "
                             f"vertical:N, depth:N (3-D), box:N, auto, none or --mask-file)")
    if mask_file is not None:
        nested["mask"]["struct_kernel"] = load_mask_file(mask_file)
    for key, value in opts.items():
        if value is None:
            continue
        group, _, field = key.partition("__")
        if field:
            nested[group][field] = value
        else:
            changes[key] = value
    changes.update({k: v for k, v in nested.items() if v})
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        base[key] = {**base[key], **value} if both else value
    try:
        return make_config("options", **base)
    except InputError as exc:
        raise InputError(option_names(str(exc))) from None


# Config fields whose command-line option is not simply ``--field-name``.
_FLAGS = {"network.depth": "--depth", "network.width": "--width",
          "network.blind_radius": "--blind-radius", "mask": "--mask",
          "mask.struct": "--mask", "mask.struct_kernel": "--mask-file",
          "mask.fraction": "--mask-fraction", "mask.stride": "--mask-stride",
          "noise_model.kind": "--noise-model", "noise_model.sigma": "--sigma",
          "dims": "--dims", "patch_z": "--patch-z", "channels": "--channels"}


def option_names(message: str) -> str:
    """Name the offending command-line options (``--depth``) instead of config fields."""
    head, sep, tail = message.partition("invalid configuration: ")
    parts = []
    for part in tail.split("; ") if sep else []:
        loc, colon, text = part.partition(": ")
        flag = _FLAGS.get(loc, "--" + loc.replace("_", "-") if "." not in loc else loc)
        parts.append(f"{flag}: {text}" if colon and loc != "config" else part)
    return head + sep + "; ".join(parts) if sep else message


def blind_radius(text: str | None) -> int | str | None:
    """``--blind-radius``: a whole number of pixels or ``auto``."""
    if text is None:
        return None
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--blind-radius: expected a whole number or 'auto', got {text!r}"
                         ) from None


def load_mask_file(path: Path) -> list[list[bool]]:
    """``--mask-file``: a boolean structN2V kernel from a ``.npy`` file, checked."""
    import numpy as np

    from .kernels import validate_kernel

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy mask ({type(exc).__name__})") from None
    return validate_kernel(np.asarray(arr).astype(bool), str(path)).tolist()
