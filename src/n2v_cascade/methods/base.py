"""The method interface: what a denoising method owns, and its shared losses.

A method is one class in one module of this package (or anywhere, registered with
:func:`n2v_cascade.methods.register`). It owns its name and labels, the config defaults
it implies, its backbone, how its network is built, its training batch and loss (or a
whole training step), its estimate, and what prediction supports it offers. The training
loop, prediction, the config schema and the CLI only call this interface.

All tensors are in normalised units, shape ``(B, C, *spatial)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..kernels import grid_hides_everything, line_kernel, validate_kernel
from ..masking import apply_masking, grid_mask, random_mask
from ..models import BlindSpotNet, UNet

if TYPE_CHECKING:  # methods read a config; they never build or validate one
    from ..config import MaskConfig, TrainConfig
    from ..runtime import Runner

# Log-variance bounds in normalised units (data std 1): the floor exp(-9) (std 1.1% of the
# data's) keeps one badly predicted pixel from producing a huge loss on smooth input.
LOGVAR_MIN, LOGVAR_MAX = -9.0, 10.0

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]


class Method:
    """Base method: original Noise2Void (random masking, squared error on masked pixels).

    Class attributes describe the method; subclasses override what differs.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""          # for tables and figures
    short_label: ClassVar[str] = ""    # in cascade names ("Structured → ProbN2V")
    summary: ClassVar[str] = ""        # one line for help texts and the README table
    citation: ClassVar[str] = ""
    backbone: ClassVar[str] = "unet"   # "unet" (masked input) or "blindspot"
    # The older spelling ``--variant X --backbone <backbone>`` that selects this method.
    variant_of: ClassVar[str | None] = None
    # Config values this method implies when the user does not set them (nested dicts).
    defaults: ClassVar[Mapping[str, Any]] = {}
    out_channels: ClassVar[int] = 1
    predicts_variance: ClassVar[bool] = False  # posterior and uncertainty need this
    listing_order: ClassVar[int] = 100  # place in help texts and tables
    loss_name: ClassVar[str] = "mse"  # what the progress shows as the training loss
    # The end of the correlated-noise warning: why it hurts and what to do; None gives
    # the advice for blind-spot and masked methods (the blind radius, structN2V masks).
    correlated_noise_advice: ClassVar[str | None] = None
    # How the network is trained, for exported model documentation.
    training_text: ClassVar[str] = "trained on inputs whose scored pixels are hidden"
    doi: ClassVar[str] = ""  # the method's own paper, cited in exports (besides N2V)
    masks_pixels: ClassVar[bool] = True  # False: structN2V masks do not apply
    # True: the estimate at a pixel is learned without that pixel's value (masked or
    # blind-spot training), so denoising may return a share of it (n2v_cascade.blend)
    hides_pixel: ClassVar[bool] = True
    # True: a later cascade stage; it trains on the previous stage's output, reads the
    # noisy images beside it (fit_noise) and denoises the noisy images, not that output
    needs_noisy: ClassVar[bool] = False

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.kernel = struct_kernel(config)
        #: Image channels of a sample; outputs hold ``out_channels`` blocks of this many
        #: (means first, then e.g. log-variances), so the loss is per channel.
        self.channels = config.n_channels

    # -- description -----------------------------------------------------------
    @property
    def blind(self) -> bool:
        """True when the network never sees the pixel it predicts (blind-spot backbone)."""
        return self.backbone == "blindspot"

    @property
    def masked(self) -> bool:
        """True when training hides pixels of the input (masked U-Net)."""
        return not self.blind

    @classmethod
    def with_defaults(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (raw config fields) with this method's defaults under them."""
        return merge(cls.defaults, values)

    @classmethod
    def validate(cls, config: TrainConfig) -> None:
        """Refuse settings this method cannot use (``ValueError`` naming the field)."""
        try:
            kernel = struct_kernel(config)
        except ValueError as exc:
            raise ValueError(f"mask.struct: {exc}") from None
        if (cls.masks_pixels and kernel is not None and config.mask.pattern == "grid"
                and grid_hides_everything(config.mask.stride, kernel, kernel_dims(config))):
            raise ValueError(
                f"mask.struct: {config.mask.struct or 'the struct kernel'} around a grid of "
                f"stride {config.mask.stride} hides every input pixel; use mask.stride "
                f"(--mask-stride) {max(kernel.shape) + 1} or more")
        given = config.mask.struct is not None and not config.mask.struct_auto
        if not cls.masks_pixels and (given or config.mask.struct_kernel is not None):
            raise ValueError(f"mask.struct: {cls.name!r} masks no pixels; for correlated "
                             f"noise use the blind-spot backbone")
        net = config.network
        if cls.backbone != "blindspot":
            if net.ring_residual:
                raise ValueError("network.ring_residual: needs the blind-spot backbone")
            if net.blind_radius != 0:
                raise ValueError("network.blind_radius: needs the blind-spot backbone (method "
                                 "'blindspot' or 'probabilistic' with backbone 'blindspot'); "
                                 "masked methods use mask.struct for correlated noise")
        if not cls.predicts_variance and (config.nll_beta is not None
                                          or config.mean_loss is not None):
            raise ValueError(f"nll_beta: nll_beta and mean_loss apply to probabilistic methods, "
                             f"not {cls.name!r}")

    def settings_for_data(self, slices: Sequence[np.ndarray], names: Sequence[str]
                          ) -> tuple[dict[str, Any], str | None]:
        """Config changes the training images call for, and a note saying what was chosen.

        Every blind-spot method assumes a pixel's noise is independent of its
        neighbours'. A blind-spot network resolves ``blind_radius: auto`` to hide the
        correlated neighbourhood, a masked one ``mask.struct: auto`` to hide the square
        of the same radius around each masked pixel (nothing for independent noise); any
        method warns when correlated noise is left unhandled (it would learn to copy the
        noise).
        """
        from ..correlation import suggest_blind_radius

        radius, corr = suggest_blind_radius(slices)
        radius_now = self.config.network.blind_radius
        struct = self.config.mask.struct
        changes: dict[str, Any] = {}
        if self.config.mask.struct_auto:
            side = 2 * radius + 1
            struct = f"box:{side}" if radius and self.masked and self.masks_pixels else None
            changes["mask"] = {"struct": struct or "none"}
            if struct:
                wider = ""
                stride = auto_stride(self.config.mask, struct, kernel_dims(self.config))
                if stride is not None:
                    changes["mask"]["stride"] = stride
                    wider = f", grid stride {stride}"
                return changes, (f"hiding the {side}x{side} square around each masked pixel"
                                 f"{wider} (noise correlation up to {corr[:, 0].max():.2f} "
                                 f"between neighbours)")
        if self.blind and radius_now == "auto":
            note = (f"blind-spot radius {radius} (noise correlation up to "
                    f"{corr[:, 0].max():.2f} between neighbours)")
            return {**changes, "network": {"blind_radius": radius}}, note
        handled = (radius_now >= radius if self.blind else
                   struct is not None or self.config.mask.struct_kernel is not None)
        if radius and not handled:
            worst = int(corr.reshape(len(corr), -1).max(axis=1).argmax())
            lag = int(corr[worst].max(axis=1).argmax())
            fix = ("--blind-radius auto" if self.blind else
                   "--mask horizontal:N / vertical:N (structN2V) or the blind-spot backbone "
                   "with --blind-radius auto")
            advice = (self.correlated_noise_advice
                      or f"a blind-spot method then learns to copy the noise - consider {fix}")
            warnings.warn(
                f"{names[worst]}: the noise looks spatially correlated (correlation "
                f"{corr[worst, lag, 0]:.2f} along Y, {corr[worst, lag, 1]:.2f} along X between "
                f"pixels {lag + 1} apart); {advice}", UserWarning, stacklevel=4)
        return changes, None

    def fit_noise(self, clean: Sequence[np.ndarray], noisy: Sequence[np.ndarray],
                  patch: tuple[int, ...]) -> str | None:
        """Fit what a ``needs_noisy`` method learns from the noisy images beside its
        (normalised) training samples ``clean``; return a line saying what it found."""
        return None

    # -- network ---------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """The shared backbone, sized by the config (dims, channels), with this method's
        head."""
        net, ndim = self.config.network, self.config.dims
        if ndim == "auto":
            raise InputError("dims is 'auto': train() chooses it from the training images; "
                             "give 2 or 3 to build the network without training")
        if self.blind:
            if net.blind_radius == "auto":
                raise InputError("network.blind_radius is 'auto' (the blind-spot default): "
                                 "train() chooses it from the training images; give a "
                                 "number to build the network without training")
            return BlindSpotNet(self.channels, self.out_channels * self.channels,
                                depth=net.depth, width=net.width,
                                ndim=ndim, growth=net.growth, blind_radius=net.blind_radius,
                                ring_residual=bool(net.ring_residual))
        return UNet(self.channels, self.out_channels * self.channels, depth=net.depth,
                    width=net.width, ndim=ndim,
                    growth=net.growth, **self.unet_options())

    def unet_options(self) -> dict[str, Any]:
        """Extra U-Net arguments of this method (N2V2: blur-pool, no top skip)."""
        return {}

    # -- training --------------------------------------------------------------
    def make_mask(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """Which pixels are hidden from the network and scored by the loss."""
        mcfg = self.config.mask
        if mcfg.pattern == "grid":
            return grid_mask(shape, mcfg.stride, generator)
        return random_mask(shape, mcfg.fraction, generator)

    def training_batch(self, patches: torch.Tensor, generator: torch.Generator) -> Batch:
        """(network input, target, loss mask or None for every pixel)."""
        if not self.masked:
            return patches, patches, None
        mask = self.make_mask(patches.shape, generator)
        inputs = apply_masking(patches, mask, self.config.mask.replacement,
                               self.config.mask.radius, generator, kernel=self.kernel)
        return inputs, patches, mask

    def loss(self, output: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor | None) -> torch.Tensor:
        """Mean squared error on the scored pixels."""
        return masked_mean((output[:, :self.channels] - target) ** 2, mask)

    def step_loss(self, patches: torch.Tensor, generator: torch.Generator,
                  run: Runner) -> torch.Tensor:
        """The loss of one training step on a batch of host patches.

        ``run(x)`` runs the network on its device (in its precision) and ``run.put(t)``
        moves a tensor there. Methods whose step is not "one batch, one forward pass"
        (pair or sub-sampling methods) override this instead of :meth:`training_batch`
        and :meth:`loss`.
        """
        inputs, target, mask = self.training_batch(patches, generator)
        return self.loss(run(inputs), run.put(target), run.put(mask))

    # -- prediction ------------------------------------------------------------
    def estimate(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named estimates from the raw network output: ``mean``, and ``var`` if predicted."""
        return {"mean": output[:, :self.channels]}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``; nested mappings merge key by key, and ``None`` in
    ``extra`` (not given: older saved configs write it) keeps the value in ``base``."""
    out = dict(base)
    for key, value in extra.items():
        if value is None and key in out:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def auto_stride(mask: MaskConfig, struct: str, ndim: int) -> int | None:
    """The grid stride ``mask.struct: auto`` moves to with the square ``struct`` (None: the
    mask's own stays): squares as wide as the grid's spacing would hide every input pixel
    (in 2-D; a YX square leaves the other planes of a 3-D grid visible), so the grid
    widens to one more than the square's side."""
    kernel = line_kernel(struct)
    if mask.pattern != "grid" or not grid_hides_everything(mask.stride, kernel, ndim):
        return None
    return kernel.shape[-1] + 1


def kernel_dims(config: TrainConfig) -> int:
    """The spatial axes a struct kernel acts in: ``dims``, or 3 while it is ``auto``
    (training resolves it first; until then a 3-D kernel is allowed)."""
    return config.dims if isinstance(config.dims, int) else 3


def struct_kernel(config: TrainConfig) -> np.ndarray | None:
    """The structN2V kernel of a config: a line or box spec, a user kernel, or None (also
    for ``auto`` before training resolves it; a 3-D kernel needs ``dims: 3``)."""
    ndim = kernel_dims(config)
    kernel = None
    if config.mask.struct is not None and not config.mask.struct_auto:
        kernel = line_kernel(config.mask.struct)
    elif config.mask.struct_kernel is not None:
        kernel = np.asarray(config.mask.struct_kernel, bool)
    if kernel is None:
        return None
    return validate_kernel(kernel, "struct_kernel" if config.mask.struct is None
                           else f"struct {config.mask.struct!r}", ndim=ndim)


def gaussian_nll(squared_error: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-pixel Gaussian negative log-likelihood from the squared error and log-variance."""
    return 0.5 * (logvar + squared_error * torch.exp(-logvar) + math.log(2 * math.pi))


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the scored pixels (all of them without a mask)."""
    if mask is None:
        return values.mean()
    m = mask.expand_as(values).to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)
