"""Training configuration: small pydantic models, validated, savable as YAML.

Every value a user can set lives here, so that a saved model carries the full recipe
that produced it. Wrong values are refused with a message naming the field. The method
registry (:mod:`n2v_cascade.methods`) validates ``variant`` and fills in the values a
method implies, so a saved config states them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import InputError

#: ``mask.struct`` value that training resolves from the images' noise correlation.
AUTO_STRUCT = "auto"
#: The method trained when none is named (docs/DECISIONS.md says why this one).
DEFAULT_VARIANT = "structured"

#: The U-Net depth of 3-D networks when the config does not set one.
DEPTH_3D = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MaskConfig(_Strict):
    """How input pixels are hidden from the network (masked variants only).

    ``pattern`` picks the masked pixels: ``random`` (N2V, ``fraction`` of the patch) or
    ``grid`` (structured: a lattice with ``stride`` and a random phase per patch).
    ``replacement`` is what the network sees there. ``struct`` additionally hides a
    neighbourhood around each masked pixel (structN2V): a line (``horizontal:5``,
    ``vertical:5``, (3-D) ``depth:3``) or a YX square (``box:3``); ``auto`` (default)
    lets training pick it from the images' noise correlation (a square over the
    correlated neighbours, or nothing for independent noise; the saved config holds
    the choice), ``none`` hides nothing more. ``struct_kernel`` is a user-given boolean
    kernel (2-D, or 3-D for 3-D data) instead.
    """

    pattern: Literal["random", "grid"] = "random"
    fraction: float = Field(0.002, gt=0.0, le=0.5)
    stride: int = Field(4, ge=2, le=64)
    radius: int = Field(2, ge=1, le=10)
    replacement: Literal["neighbour", "median", "zero"] = "neighbour"
    struct: str | None = AUTO_STRUCT
    struct_kernel: list[list[bool]] | list[list[list[bool]]] | None = None

    @field_validator("struct", mode="before")
    @classmethod
    def _no_struct(cls, value: Any) -> Any:
        """``none`` (any case) is the same as no struct mask."""
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @property
    def struct_auto(self) -> bool:
        """True while ``struct`` is ``auto``: training has yet to choose it."""
        return self.struct == AUTO_STRUCT

    @model_validator(mode="after")
    def _check_struct(self) -> MaskConfig:
        if self.struct_kernel is not None and self.struct_auto:
            self.__dict__["struct"] = None  # a user kernel replaces the automatic choice
        if self.struct is not None and self.struct_kernel is not None:
            raise ValueError("give either struct or struct_kernel, not both")
        return self


class NetworkConfig(_Strict):
    """Size of the shared U-Net backbone (or its blind-spot form).

    Level ``k`` of the U-Net has ``width * growth**k`` channels. ``blind_radius``
    (blind-spot backbone only) widens the blind spot from the pixel itself (0) to the
    ``(2r + 1) x (2r + 1)`` square around it, for spatially correlated noise; ``auto``
    (the blind-spot methods' default) picks it from the training images
    (:mod:`n2v_cascade.correlation`) and the saved config holds the number chosen.
    ``ring_residual`` (blind-spot backbone) adds the mean of the ring just outside the
    blind spot to the predicted mean (see ``BlindSpotNet``).
    """

    depth: int = Field(3, ge=1, le=6)
    width: int = Field(32, ge=1, le=512)
    growth: float = Field(1.0, ge=1.0, le=4.0)
    blind_radius: Annotated[int, Field(ge=0, le=8)] | Literal["auto"] = 0
    ring_residual: bool = False

    @field_validator("blind_radius", "ring_residual", mode="before")
    @classmethod
    def _unset(cls, value: Any, info: ValidationInfo) -> Any:
        """``None`` (written by older versions for "not used") is the neutral value."""
        return cls.model_fields[info.field_name].default if value is None else value


class NoiseModelConfig(_Strict):
    """Noise model for the probabilistic variant's posterior mean.

    ``gaussian``: constant variance ``sigma**2``; ``poisson-gaussian``: variance
    ``a * signal + b``. Values left ``None`` are estimated from the training data
    (outside the network) and stored with the model. Units: the image's intensities.
    """

    kind: Literal["gaussian", "poisson-gaussian"] = "gaussian"
    sigma: float | None = Field(None, gt=0.0)
    a: float | None = Field(None, ge=0.0)
    b: float | None = Field(None, ge=0.0)


class TrainConfig(_Strict):
    """Everything that defines a training run. Defaults follow the paper (III.E).

    ``variant`` names the method (``n2v-cascade methods`` lists them); fields a method
    does not use keep their neutral value. ``backbone`` is accepted on input as the
    older spelling (``probabilistic`` + ``blindspot`` = ``probabilistic-blindspot``).
    ``nll_beta`` (beta of beta-NLL, Seitzer et al. 2022; 0 is plain Gaussian NLL) and
    ``mean_loss`` (``nll``: joint NLL; ``mse``: squared error for the mean, NLL of its
    stopped residual for the variance) apply to probabilistic methods. ``ema_decay``
    averages the weights over training (0: off); the saved model gets the average,
    which removes most of the step-to-step noise of constant-learning-rate training;
    the decay warms up as ``min(ema_decay, (1 + n) / (10 + n))`` after n updates.
    ``lr_schedule`` (:mod:`n2v_cascade.schedule`) lowers the learning rate over the run:
    the fraction done is that of the steps, the time limit or a budget callback,
    whichever is furthest.

    ``dims`` is the number of spatial axes the network convolves: 2 (YX; every other
    axis holds independent images), 3 (ZYX, or TYX for a time-lapse without Z) or
    ``auto`` (3 when the data have a Z axis of at least ``axes.MIN_AUTO_SLICES``
    slices); the saved config holds the number used. ``patch_size`` is the side of
    the YX patch, ``patch_z`` the depth of a 3-D patch (shrunk to the stack's depth
    when it has fewer slices). ``channels``: ``independent`` treats a C axis as a
    sample axis (every channel is an image of one model); ``joint`` makes the channels
    the input and output channels of one network (loss per channel), and training sets
    ``n_channels`` to the data's channel count. One normalisation covers all channels.
    A 3-D network's ``network.depth`` defaults to :data:`DEPTH_3D`, as in 3-D N2V: it
    reaches half as far, so its exact tiles hold far fewer voxels (the comparison with
    depth 3 is in docs/DECISIONS.md).
    """

    variant: str = DEFAULT_VARIANT
    dims: Literal[2, 3, "auto"] = 2
    patch_size: int = Field(64, ge=8, le=4096)
    patch_z: int = Field(16, ge=1, le=1024)
    channels: Literal["independent", "joint"] = "independent"
    n_channels: int = Field(1, ge=1, le=64)
    batch_size: int = Field(8, ge=1, le=4096)
    epochs: int = Field(30, ge=1, le=100000)
    steps_per_epoch: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    seed: int = Field(0, ge=0)
    augment: bool = True
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    nll_beta: float | None = Field(None, ge=0.0, le=1.0)
    mean_loss: Literal["nll", "mse"] | None = None
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    mask: MaskConfig = Field(default_factory=MaskConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    noise_model: NoiseModelConfig = Field(default_factory=NoiseModelConfig)

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        """Resolve the method (and the older ``backbone`` spelling); add its defaults."""
        if not isinstance(data, dict):
            return data
        from .methods import method_class, methods

        # sub-configs given as objects (and every one on assignment) stay objects
        kinds = {k: type(v) for k, v in data.items() if isinstance(v, BaseModel)}
        values = {k: v.model_dump(exclude_unset=True) if k in kinds else v
                  for k, v in data.items()}
        backbone = values.pop("backbone", None)
        if values.get("variant", DEFAULT_VARIANT) not in methods():
            return values  # the field validator names the unknown method
        try:
            method = method_class(values.get("variant", DEFAULT_VARIANT), backbone)
        except ValueError as exc:
            raise ValueError(f"backbone: {exc}") from None
        values["variant"] = method.name
        values = method.with_defaults(values)
        network = values.get("network")
        if values.get("dims") == 3 and not (isinstance(network, dict) and "depth" in network):
            values["network"] = {**(network or {}), "depth": DEPTH_3D}
        return {k: kinds[k](**v) if k in kinds else v for k, v in values.items()}

    @field_validator("variant")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from .methods import method_class

        return method_class(name).name  # raises ValueError listing the methods

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        from .methods import method_class

        factor = 2**self.network.depth
        if self.patch_size % factor:
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by 2**depth = {factor}"
            )
        if self.n_channels > 1 and self.channels != "joint":
            raise ValueError("n_channels: more than one channel needs channels: joint")
        method_class(self.variant).validate(self)
        return self


def _format_validation_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"{source}: invalid configuration: " + "; ".join(parts)


def make_config(source: str = "config", **values: Any) -> TrainConfig:
    """Build a TrainConfig, turning pydantic's multi-line errors into one InputError line."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise InputError(_format_validation_error(exc, source)) from None


def update_config(config: TrainConfig, source: str = "options", **changes: Any) -> TrainConfig:
    """Return a copy with nested changes applied (``mask={...}`` merges), validated.

    Only fields that were set (explicitly or by a variant default) are carried over, so
    changing ``variant`` still brings that variant's own defaults.
    """
    data = config.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return make_config(source, **data)


def config_yaml(config: TrainConfig) -> str:
    """The config as YAML text (every field, so the file is the whole recipe)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing or unparsable file gives a one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not valid YAML ({line})") from None


def read_config_values(path: str | Path) -> dict[str, Any]:
    """The values a YAML config file sets, checked: errors name the file (one line).

    Only what the file sets is returned, so variant-implied defaults still apply when
    the values are merged with others (command-line options).
    """
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
    make_config(str(path), **data)  # validate the file on its own
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config; a missing, unreadable or invalid file gives a one-line InputError."""
    return make_config(str(path), **read_config_values(path))
