"""Training configuration: small pydantic models, validated, savable as YAML.

Every value a user can set lives here, so that a saved model carries the full recipe
that produced it. Wrong values are refused with a message naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError

VariantName = Literal["n2v", "n2v2", "structured", "blindspot", "probabilistic"]
VARIANTS: tuple[str, ...] = ("n2v", "n2v2", "structured", "blindspot", "probabilistic")
# N2V2 (no top-level skip, blur-pool) drifted in intensity at 1e-3 on FMD frames and fell
# below the noisy input on two of them; 3e-4 fixed that at equal BSD68 quality
# (benchmarks/RESULTS.md, issue 3).
N2V2_LEARNING_RATE = 3e-4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MaskConfig(_Strict):
    """How input pixels are hidden from the network (masked variants only).

    ``pattern`` picks the masked pixels: ``random`` (N2V, ``fraction`` of the patch) or
    ``grid`` (structured: a lattice with ``stride`` and a random phase per patch).
    ``replacement`` is what the network sees there. ``struct`` additionally hides a
    line-shaped neighbourhood around each masked pixel (structN2V), e.g.
    ``horizontal:5``; ``struct_kernel`` is a user-given boolean kernel instead.
    """

    pattern: Literal["random", "grid"] = "random"
    fraction: float = Field(0.002, gt=0.0, le=0.5)
    stride: int = Field(4, ge=2, le=64)
    radius: int = Field(2, ge=1, le=10)
    replacement: Literal["neighbour", "median", "zero"] = "neighbour"
    struct: str | None = None
    struct_kernel: list[list[bool]] | None = None

    @model_validator(mode="after")
    def _check_struct(self) -> MaskConfig:
        if self.struct is not None:
            from .masking import line_kernel

            line_kernel(self.struct)  # raises InputError naming the option
        if self.struct is not None and self.struct_kernel is not None:
            raise ValueError("give either struct or struct_kernel, not both")
        return self


class NetworkConfig(_Strict):
    """Size of the shared U-Net backbone (or its blind-spot form).

    Level ``k`` of the U-Net has ``width * growth**k`` channels. ``blind_radius``
    (blind-spot backbone only) widens the blind spot from the pixel itself (0) to the
    ``(2r + 1) x (2r + 1)`` square around it, for spatially correlated noise; ``auto``
    (the blind-spot backbone's default, ``None``) picks it from the training images
    (:mod:`n2v_cascade.correlation`) and the saved config holds the number chosen.
    """

    depth: int = Field(3, ge=1, le=6)
    width: int = Field(32, ge=1, le=512)
    growth: float = Field(2.0, ge=1.0, le=4.0)
    blind_radius: Annotated[int, Field(ge=0, le=8)] | Literal["auto"] | None = None
    # Blind-spot backbone: add the mean of the ring just outside the blind spot to the
    # predicted mean (see BlindSpotNet). None: on for the blind-spot backbone.
    ring_residual: bool | None = None


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
    """Everything that defines a training run. Defaults follow the paper (III.E)."""

    variant: VariantName = "n2v"
    backbone: Literal["unet", "blindspot"] | None = None
    patch_size: int = Field(128, ge=8, le=4096)
    batch_size: int = Field(8, ge=1, le=4096)
    epochs: int = Field(30, ge=1, le=100000)
    steps_per_epoch: int | None = Field(None, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    seed: int = Field(0, ge=0)
    augment: bool = True
    precision: Literal["float32", "bfloat16"] = "float32"
    # Probabilistic variant: beta of beta-NLL (Seitzer et al. 2022); 0 is PN2V's plain
    # Gaussian NLL. None: 0 with the blind-spot backbone (plain NLL keeps the variance
    # calibrated, which the posterior mean needs), 0.5 with the masked U-Net (plain NLL
    # diverged there when retraining on smooth stage outputs). See benchmarks/RESULTS.md.
    nll_beta: float | None = Field(None, ge=0.0, le=1.0)
    # Probabilistic variant: "mse" trains the mean head by squared error and the variance
    # head by the NLL of the (gradient-stopped) mean's residual: the mean learns as fast
    # as a plain blind-spot network's while the variance stays calibrated. "nll": the
    # joint (beta-)NLL above.
    # None: "mse" with the blind-spot backbone (unless nll_beta is given), "nll" otherwise.
    mean_loss: Literal["nll", "mse"] | None = None
    # Exponential moving average of the weights (0: off). The saved model gets the
    # averaged weights, which smooth out the step-to-step noise of constant-LR training
    # (FMD, 180 s: N2V +0.4 dB; it removed the blind-spot prior's intensity drift);
    # the decay warms up as min(ema_decay, (1 + n) / (10 + n)) after n updates.
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    noise_model: NoiseModelConfig = Field(default_factory=NoiseModelConfig)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        # Variant defaults that differ from N2V's, made explicit so a saved config says them.
        if self.variant == "structured" and "pattern" not in self.mask.model_fields_set:
            self.mask.pattern = "grid"
        if self.variant == "n2v2" and "replacement" not in self.mask.model_fields_set:
            self.mask.replacement = "median"
        if self.variant == "n2v2" and "learning_rate" not in self.model_fields_set:
            self.learning_rate = N2V2_LEARNING_RATE
        factor = 2**self.network.depth
        if self.patch_size % factor:
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by 2**depth = {factor}"
            )
        if self.backbone == "blindspot" and self.variant not in ("blindspot", "probabilistic"):
            raise ValueError(f"backbone 'blindspot' is not available for variant {self.variant!r}")
        if self.backbone == "unet" and self.variant == "blindspot":
            raise ValueError("variant 'blindspot' needs backbone 'blindspot'")
        if self.mean_loss == "mse" and self.nll_beta is not None:
            raise ValueError("nll_beta applies to mean_loss 'nll' only")
        if self.network.ring_residual and self.resolved_backbone != "blindspot":
            raise ValueError("network.ring_residual needs the blind-spot backbone")
        if self.network.blind_radius and self.resolved_backbone != "blindspot":
            raise ValueError("network.blind_radius needs the blind-spot backbone (variant "
                             "'blindspot', or 'probabilistic' with backbone 'blindspot'); "
                             "masked variants use mask.struct for correlated noise")
        return self

    @property
    def resolved_backbone(self) -> str:
        """The backbone actually used: explicit, or the variant's default."""
        if self.backbone is not None:
            return self.backbone
        return "blindspot" if self.variant == "blindspot" else "unet"

    @property
    def resolved_mean_loss(self) -> str:
        """Loss of the probabilistic mean actually used: explicit, or the backbone's default.

        The decoupled "mse" form made the blind-spot prior converge faster and without
        the intensity bias of the joint NLL (benchmarks/RESULTS.md, FMD).
        """
        if self.mean_loss is not None:
            return self.mean_loss
        blind = self.resolved_backbone == "blindspot"
        return "mse" if blind and self.nll_beta is None else "nll"

    @property
    def resolved_blind_radius(self) -> int | str:
        """Blind radius actually used: explicit, ``auto`` for the blind-spot backbone, else 0.

        ``auto`` by default because real microscope noise is often spatially correlated
        (FMD wide-field frames: a 3x3 blind spot gained 1.5-2 dB, benchmarks/RESULTS.md)
        while white noise resolves to 0, the plain blind spot.
        """
        if self.network.blind_radius is not None:
            return self.network.blind_radius
        return "auto" if self.resolved_backbone == "blindspot" else 0

    @property
    def resolved_ring_residual(self) -> bool:
        """Whether the blind-spot net adds its ring mean: explicit, or on for that backbone."""
        if self.network.ring_residual is not None:
            return self.network.ring_residual
        return self.resolved_backbone == "blindspot"

    @property
    def resolved_nll_beta(self) -> float:
        """beta-NLL weight actually used: explicit, or the backbone's default."""
        if self.nll_beta is not None:
            return self.nll_beta
        return 0.0 if self.resolved_backbone == "blindspot" else 0.5


def _format_validation_error(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
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


def save_config(config: TrainConfig, path: str | Path, overwrite: bool = False) -> Path:
    """Write the config as YAML (atomically)."""
    from .io import atomic_write_text

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return atomic_write_text(path, text, overwrite=overwrite)


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
