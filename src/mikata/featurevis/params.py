"""How an image is parameterized while it is optimized: raw pixels or a Fourier spectrum.

Both map an unconstrained tensor through (optional) decorrelated color and a sigmoid to pixels in
[0, 1], so the optimizer never has to clip. The Fourier parameterization scales each frequency by
1/f (as in lucid/lucent): gradient steps then change low frequencies as fast as high ones, which
removes most of the high-frequency noise that plain pixel ascent produces.

Every parameterization can also be built *from* an image (``from_image``), which is how octaves
move to a larger size and how DeepDream starts from a photo.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> p = FourierImage.random(2, 3, 64, 64, g)
    >>> p().shape
    torch.Size([2, 3, 64, 64])
"""

from __future__ import annotations

import math

import torch

# Square root of ImageNet's color covariance (from lucid), columns scaled to unit norm at most.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()
_FOURIER_GAIN = 4.0  # lucid's constant: divides the spatial signal to keep the sigmoid unsaturated
_EPS = 1e-4


def _decorrelate(t: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Mix channels with the color matrix (3 channels only; other counts pass through)."""
    if t.shape[1] != 3:
        return t
    m = _COLOR.to(t)
    m = torch.linalg.inv(m) if inverse else m
    # out[:, d] = sum_c m[d, c] * t[:, c]: a 1x1 convolution (no permute copies, unlike einsum)
    return torch.nn.functional.conv2d(t, m[:, :, None, None])  # (N, 3, H, W)


def _logit(x01: torch.Tensor) -> torch.Tensor:
    return torch.logit(x01.clamp(_EPS, 1 - _EPS))


class PixelImage:
    """Pixels through decorrelated color and a sigmoid. ``params`` is one tensor ``(N, C, H, W)``."""

    def __init__(self, raw: torch.Tensor, decorrelate: bool = True):
        self.raw = raw.detach().clone().requires_grad_(True)  # (N, C, H, W)
        self.decorrelate = decorrelate

    @classmethod
    def random(cls, n: int, c: int, h: int, w: int, generator: torch.Generator, sd: float = 0.01,
               decorrelate: bool = True, device: torch.device | str = "cpu") -> "PixelImage":
        """Drawn from ``generator`` (a CPU one gives the same start on every device), then moved."""
        return cls(torch.randn(n, c, h, w, generator=generator).to(device) * sd, decorrelate)

    @classmethod
    def from_image(cls, x01: torch.Tensor, decorrelate: bool = True) -> "PixelImage":
        return cls(_decorrelate(_logit(x01), inverse=True) if decorrelate else _logit(x01), decorrelate)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.raw]

    def __call__(self) -> torch.Tensor:
        t = _decorrelate(self.raw) if self.decorrelate else self.raw
        return torch.sigmoid(t)  # (N, C, H, W) in [0, 1]


def _spectrum_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    freqs = (fx * fx + fy * fy).sqrt()  # (h, w//2+1)
    return 1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power


class FourierImage:
    """A real/imaginary spectrum ``(N, C, H, W//2+1, 2)`` scaled by 1/f, then decorrelated color."""

    def __init__(self, spectrum: torch.Tensor, h: int, w: int, decorrelate: bool = True, decay_power: float = 1.0):
        self.spectrum = spectrum.detach().clone().requires_grad_(True)
        self.h, self.w, self.decorrelate = h, w, decorrelate
        self.scale = _spectrum_scale(h, w, decay_power)[..., None].to(spectrum.device)  # (h, w//2+1, 1)
        self.decay_power = decay_power

    @classmethod
    def random(cls, n: int, c: int, h: int, w: int, generator: torch.Generator, sd: float = 0.01,
               decorrelate: bool = True, decay_power: float = 1.0,
               device: torch.device | str = "cpu") -> "FourierImage":
        """Drawn from ``generator`` (a CPU one gives the same start on every device), then moved."""
        spectrum = torch.randn(n, c, h, w // 2 + 1, 2, generator=generator).to(device) * sd
        return cls(spectrum, h, w, decorrelate, decay_power)

    @classmethod
    def from_image(cls, x01: torch.Tensor, decorrelate: bool = True, decay_power: float = 1.0) -> "FourierImage":
        """The exact inverse of ``__call__``: the spectrum whose image is ``x01`` (clamped off 0 and 1)."""
        h, w = x01.shape[-2:]
        t = _logit(x01)
        t = _decorrelate(t, inverse=True) if decorrelate else t
        spec = torch.view_as_real(torch.fft.rfftn(t * _FOURIER_GAIN, dim=(-2, -1), norm="ortho"))
        return cls(spec / _spectrum_scale(h, w, decay_power)[..., None].to(spec.device), h, w, decorrelate,
                   decay_power)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def __call__(self) -> torch.Tensor:
        spec = torch.view_as_complex((self.spectrum * self.scale).contiguous())
        t = torch.fft.irfftn(spec, s=(self.h, self.w), dim=(-2, -1), norm="ortho") / _FOURIER_GAIN
        t = _decorrelate(t) if self.decorrelate else t
        return torch.sigmoid(t)  # (N, C, H, W) in [0, 1]


class MacoImage:
    """Magnitude-constrained Fourier (MACO, Fel et al. 2023): only the *phase* ``(N, C, H, W//2+1)``
    is optimized; the magnitude is fixed to a natural-image power law (1/f), so the optimizer cannot
    pour energy into the high frequencies that make an image adversarial rather than legible. The
    spatial image is standardized per channel (fixed contrast), decorrelated, then squashed by a sigmoid.
    ``from_image`` keeps an image's phase (its magnitude is replaced: octaves are approximate)."""

    CONTRAST = 1.5  # standard deviations of the logit image: mid-grey +- a visible range

    def __init__(self, phase: torch.Tensor, h: int, w: int, decorrelate: bool = True, decay_power: float = 1.0):
        self.phase = phase.detach().clone().requires_grad_(True)  # (N, C, h, w//2+1)
        self.h, self.w, self.decorrelate = h, w, decorrelate
        self.magnitude = _spectrum_scale(h, w, decay_power).to(phase.device)  # (h, w//2+1)
        self.magnitude[0, 0] = 0.0  # no DC: the mean comes from the standardization
        self.decay_power = decay_power

    @classmethod
    def random(cls, n: int, c: int, h: int, w: int, generator: torch.Generator, sd: float = 0.01,
               decorrelate: bool = True, decay_power: float = 1.0,
               device: torch.device | str = "cpu") -> "MacoImage":
        """Drawn from ``generator`` (a CPU one gives the same start on every device), then moved."""
        phase = (torch.rand(n, c, h, w // 2 + 1, generator=generator) * 2 - 1) * math.pi
        return cls(phase.to(device), h, w, decorrelate, decay_power)

    @classmethod
    def from_image(cls, x01: torch.Tensor, decorrelate: bool = True, decay_power: float = 1.0) -> "MacoImage":
        h, w = x01.shape[-2:]
        t = _logit(x01)
        t = _decorrelate(t, inverse=True) if decorrelate else t
        return cls(torch.angle(torch.fft.rfftn(t, dim=(-2, -1), norm="ortho")), h, w, decorrelate, decay_power)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.phase]

    def __call__(self) -> torch.Tensor:
        spec = torch.polar(self.magnitude.to(self.phase), self.phase)  # (N, C, h, w//2+1) complex
        t = torch.fft.irfftn(spec, s=(self.h, self.w), dim=(-2, -1), norm="ortho")  # (N, C, H, W)
        t = (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True).clamp_min(1e-8) * self.CONTRAST
        t = _decorrelate(t) if self.decorrelate else t
        return torch.sigmoid(t)  # (N, C, H, W) in [0, 1]


PARAMETERIZATIONS = {"fourier": FourierImage, "pixel": PixelImage, "maco": MacoImage}


def octave_sizes(size: tuple[int, int], octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """Image sizes from the smallest pyramid level to ``size`` (like deepDreamImage's PyramidLevels)."""
    h, w = size
    return [(max(8, math.floor(h / octave_scale ** k)), max(8, math.floor(w / octave_scale ** k)))
            for k in reversed(range(octaves))]
