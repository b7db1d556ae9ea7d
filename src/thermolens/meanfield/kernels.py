"""Interaction kernels on the circle and the linear stability of the uniform density.

Convention (the one of Mun & Rosenzweig, arXiv:2604.16288 and arXiv:2602.14954). Densities ``rho`` live
on the circle ``theta in [0, 1)`` with ``integral rho = 1``, and the free energy is

    F_K(rho) = integral rho log rho  -  K * double-integral W(theta - theta') rho(theta) rho(theta')

with an even, 1-periodic interaction ``W``. Fourier coefficients are

    W_hat(k) = integral_0^1 W(theta) exp(-2 pi i k theta) d theta        (real and even in k for even W).

The second variation of ``F_K`` at the uniform density in the direction ``eta = sum_k eta_k e_k`` is
``sum_{k != 0} |eta_k|^2 (1 - 2 K W_hat(k))``, so the uniform state loses linear stability at

    K_# = 1 / (2 max_{k >= 1} W_hat(k)),      critical mode k_* = argmax_{k >= 1} W_hat(k).

Kernels with no positive coefficient keep the uniform state stable for every ``K`` (``K_# = inf``).

Closed-form coefficients (derived in docs/meanfield.md):

- noisy transformer ``W_beta = (exp(beta cos 2 pi theta) - 1)/beta``: from ``exp(beta cos x) = I_0(beta) +
  2 sum_k I_k(beta) cos kx``, ``W_hat(k) = I_k(beta)/beta`` (k >= 1), ``W_hat(0) = (I_0(beta) - 1)/beta``;
- Doi--Onsager ``W = -|sin 2 pi theta|``: ``W_hat(2j) = (2/pi)/(4 j^2 - 1)``, ``W_hat(0) = -2/pi``, odd: 0;
- noisy Hegselmann--Krause ``W_R = (R - 2 pi |theta|)_+^2``: ``W_hat(k) = 2 (kR - sin kR)/(pi k^3)`` for
  ``R <= pi`` and ``2 (R - (R - pi)(-1)^k)/(pi k^2)`` for ``R > pi``;
- Kuramoto--Daido ``W = cos 2 pi theta + m cos 4 pi theta``: ``W_hat(1) = 1/2``, ``W_hat(2) = m/2``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

KERNEL_NAMES = ("noisy-transformer", "doi-onsager", "hegselmann-krause", "kuramoto-daido")

# Number of sample points used to Fourier-transform a user callable (coefficients up to N/2 - 1).
_N_QUADRATURE = 1 << 14
# Relative tolerance of the evenness / periodicity checks on a user callable.
_SYMMETRY_TOL = 1e-8


# --------------------------------------------------------------------------------------------------
# the kernel object


@dataclass(frozen=True)
class Kernel:
    """An even, 1-periodic interaction ``W`` on the circle with its Fourier coefficients.

    ``coefficients[k] = W_hat(k)`` for ``k = 0 .. n_coefficients - 1``; coefficients beyond are taken as
    zero (``tail_bound`` bounds ``sum_{k >= n} |W_hat(k)|`` when known, ``nan`` otherwise).
    ``function`` evaluates ``W`` in real space (array of ``theta`` in, array out) and
    ``derivative`` evaluates ``W'`` when a closed form is known (used by the direct particle method).
    """

    name: str
    parameter: str | None  # "beta", "R", "m" or None
    value: float | None
    coefficients: np.ndarray = field(repr=False)  # (n_coefficients,) float64
    function: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    derivative: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)
    tail_bound: float = float("nan")

    def __post_init__(self) -> None:
        c = np.asarray(self.coefficients, dtype=np.float64)
        if c.ndim != 1 or c.size < 2:
            raise ValueError("a kernel needs Fourier coefficients W_hat(0), W_hat(1), ...: give at least two")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"kernel {self.name}: Fourier coefficients are not finite; lower the parameter")
        c.setflags(write=False)
        object.__setattr__(self, "coefficients", c)

    @property
    def label(self) -> str:
        return self.name if self.parameter is None else f"{self.name} ({self.parameter}={self.value:g})"

    def w_hat(self, k: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """``W_hat(|k|)`` for integer ``k`` (zero beyond the stored coefficients)."""
        k = np.abs(np.asarray(k, dtype=np.int64))
        out = np.zeros(k.shape, dtype=np.float64)
        inside = k < self.coefficients.size
        out[inside] = self.coefficients[k[inside]]
        return out

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        return self.function(np.asarray(theta, dtype=np.float64))


def _centered(theta: np.ndarray) -> np.ndarray:
    """Map theta to [-1/2, 1/2)."""
    return theta - np.floor(theta + 0.5)


def _fourier_series(coefficients: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    c = np.array(coefficients, dtype=np.float64)
    k = np.arange(1, c.size)

    def w(theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        return c[0] + 2.0 * np.cos(2 * np.pi * np.multiply.outer(theta, k)) @ c[1:]

    return w


# --------------------------------------------------------------------------------------------------
# named kernels


def noisy_transformer(beta: float, *, n_coefficients: int = 512) -> Kernel:
    """``W_beta(theta) = (exp(beta cos 2 pi theta) - 1) / beta`` (Geshkovski et al., arXiv:2312.10794)."""
    from scipy.special import ive

    beta = float(beta)
    if not beta > 0 or not math.isfinite(beta):
        raise ValueError(f"beta={beta} must be a positive finite number")
    if beta > 300:
        raise ValueError(
            f"beta={beta} is too large for double precision (exp(beta) overflows); use beta <= 300"
        )
    k = np.arange(n_coefficients)
    # I_k(beta) = ive(k, beta) * exp(beta): scaled Bessel functions stay finite for large beta.
    coeff = ive(k, beta) * math.exp(beta) / beta
    coeff[0] = (ive(0, beta) * math.exp(beta) - 1.0) / beta
    tail = float(coeff[-1]) * 2.0  # I_k decays faster than geometrically for k > beta

    def w(theta):
        return np.expm1(beta * np.cos(2 * np.pi * theta)) / beta

    def dw(theta):
        return -2 * np.pi * np.sin(2 * np.pi * theta) * np.exp(beta * np.cos(2 * np.pi * theta))

    return Kernel("noisy-transformer", "beta", beta, coeff, w, dw, tail)


def doi_onsager(*, n_coefficients: int = 512) -> Kernel:
    """``W(theta) = -|sin 2 pi theta|`` (2-D Doi--Onsager; continuous at K = 3 pi / 4, arXiv:2604.16288)."""
    k = np.arange(n_coefficients)
    coeff = np.zeros(n_coefficients)
    even = k[(k % 2 == 0) & (k > 0)]
    coeff[even] = (2 / np.pi) / (even.astype(np.float64) ** 2 - 1)  # (2/pi)/(4 j^2 - 1) with k = 2 j
    coeff[0] = -2 / np.pi
    tail = (2 / np.pi) / (n_coefficients - 2)  # sum_{k >= n} 2/(pi (k^2 - 1)) over even k

    def w(theta):
        return -np.abs(np.sin(2 * np.pi * theta))

    def dw(theta):
        s = np.sin(2 * np.pi * theta)
        return -2 * np.pi * np.sign(s) * np.cos(2 * np.pi * theta)

    return Kernel("doi-onsager", None, None, coeff, w, dw, tail)


def _x_minus_sin(x: np.ndarray) -> np.ndarray:
    """``x - sin x`` without cancellation for small x (Taylor series below 0.1, error < 1e-19 relative)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 0.1
    out = x - np.sin(x)
    xs = x[small]
    out[small] = xs**3 / 6 * (1 - xs**2 / 20 * (1 - xs**2 / 42 * (1 - xs**2 / 72)))
    return out


def hegselmann_krause(R: float, *, n_coefficients: int = 512) -> Kernel:
    """``W_R(theta) = (R - 2 pi |theta|)_+^2`` with theta in [-1/2, 1/2) (noisy Hegselmann--Krause)."""
    R = float(R)
    if not R > 0 or not math.isfinite(R):
        raise ValueError(f"R={R} must be a positive finite number (the interaction radius in radians)")
    k = np.arange(1, n_coefficients, dtype=np.float64)
    coeff = np.empty(n_coefficients)
    if R <= np.pi:
        coeff[1:] = 2 * _x_minus_sin(k * R) / (np.pi * k**3)
        coeff[0] = R**3 / (3 * np.pi)
        tail = 2 * R / (np.pi * (n_coefficients - 1))
    else:
        coeff[1:] = 2 * (R - (R - np.pi) * (-1.0) ** k) / (np.pi * k**2)
        coeff[0] = (R**3 - (R - np.pi) ** 3) / (3 * np.pi)
        tail = 2 * (2 * R) / (np.pi * (n_coefficients - 1))

    def w(theta):
        return np.clip(R - 2 * np.pi * np.abs(_centered(theta)), 0.0, None) ** 2

    def dw(theta):
        t = _centered(theta)
        return -4 * np.pi * np.sign(t) * np.clip(R - 2 * np.pi * np.abs(t), 0.0, None)

    return Kernel("hegselmann-krause", "R", R, coeff, w, dw, tail)


def kuramoto_daido(m: float) -> Kernel:
    """``W(theta) = cos 2 pi theta + m cos 4 pi theta`` (arXiv:2602.14954: cos x + m cos 2x, x=2pi theta)."""
    m = float(m)
    if not math.isfinite(m):
        raise ValueError(f"m={m} must be finite")
    coeff = np.array([0.0, 0.5, 0.5 * m])

    def w(theta):
        return np.cos(2 * np.pi * theta) + m * np.cos(4 * np.pi * theta)

    def dw(theta):
        return -2 * np.pi * np.sin(2 * np.pi * theta) - 4 * np.pi * m * np.sin(4 * np.pi * theta)

    return Kernel("kuramoto-daido", "m", m, coeff, w, dw, 0.0)


def from_coefficients(coefficients: Sequence[float], *, name: str = "fourier") -> Kernel:
    """A kernel given by ``W_hat(0), W_hat(1), ...``: ``W = W_hat(0) + 2 sum_k W_hat(k) cos 2 pi k theta``."""
    c = np.asarray(coefficients, dtype=np.float64)
    if c.ndim != 1 or c.size < 2:
        raise ValueError("give at least two Fourier coefficients W_hat(0), W_hat(1), ...")
    return Kernel(name, None, None, c, _fourier_series(c), None, 0.0)


def from_callable(
    w: Callable[[np.ndarray], np.ndarray], *, name: str = "callable", n_coefficients: int = 512
) -> Kernel:
    """Fourier-transform a user kernel ``w(theta)`` by the trapezoid rule on 2^14 points.

    ``w`` must accept an array of ``theta`` and be even and 1-periodic; both are checked on random points
    and the kernel is refused (``ValueError`` saying which property fails) otherwise.
    """
    rng = np.random.default_rng(12345)
    probe = rng.uniform(0.0, 1.0, 257)
    try:
        a, b, c = (np.asarray(w(x), dtype=np.float64) for x in (probe, -probe, probe + 1.0))
    except Exception as exc:  # noqa: BLE001 - a user callable can fail in any way
        raise ValueError(f"kernel callable failed on an array of angles: {exc}") from exc
    if a.shape != probe.shape or not np.all(np.isfinite(a)):
        raise ValueError("kernel callable must map an array of angles to finite values of the same shape")
    scale = max(float(np.max(np.abs(a))), 1e-300)
    if np.max(np.abs(a - b)) > _SYMMETRY_TOL * scale:
        raise ValueError(
            f"kernel {name} is not even: max |W(theta) - W(-theta)| = "
            f"{np.max(np.abs(a - b)):.3g}; give an even interaction W(theta) = W(-theta)"
        )
    if np.max(np.abs(a - c)) > _SYMMETRY_TOL * scale:
        raise ValueError(
            f"kernel {name} is not 1-periodic: max |W(theta + 1) - W(theta)| = "
            f"{np.max(np.abs(a - c)):.3g}; the circle is theta in [0, 1)"
        )
    if n_coefficients > _N_QUADRATURE // 2:
        raise ValueError(
            f"n_coefficients={n_coefficients} exceeds {_N_QUADRATURE // 2} for a callable kernel"
        )
    theta = np.arange(_N_QUADRATURE) / _N_QUADRATURE
    spectrum = np.fft.rfft(np.asarray(w(theta), dtype=np.float64)).real / _N_QUADRATURE
    tail = float(np.sum(np.abs(spectrum[n_coefficients:])))
    return Kernel(name, None, None, spectrum[:n_coefficients], w, None, tail)


def make_kernel(
    name: str,
    *,
    beta: float | None = None,
    R: float | None = None,
    m: float | None = None,
    n_coefficients: int = 512,
) -> Kernel:
    """Build a named kernel; the parameter it needs must be given (``beta``, ``R`` or ``m``)."""
    needed = {"noisy-transformer": ("beta", beta), "hegselmann-krause": ("R", R), "kuramoto-daido": ("m", m)}
    if name not in KERNEL_NAMES:
        raise ValueError(f"unknown kernel {name!r}; choose one of {', '.join(KERNEL_NAMES)}")
    if name in needed and needed[name][1] is None:
        raise ValueError(f"kernel {name} needs --{needed[name][0]}")
    if name == "noisy-transformer":
        return noisy_transformer(beta, n_coefficients=n_coefficients)
    if name == "hegselmann-krause":
        return hegselmann_krause(R, n_coefficients=n_coefficients)
    if name == "kuramoto-daido":
        return kuramoto_daido(m)
    return doi_onsager(n_coefficients=n_coefficients)


# --------------------------------------------------------------------------------------------------
# linear stability of the uniform density


@dataclass(frozen=True)
class LinearStability:
    """``K_# = 1/(2 max_k W_hat(k))`` and the mode that goes unstable there (``inf`` and 0 if none does)."""

    K_sharp: float
    critical_mode: int
    w_hat_critical: float
    degenerate_modes: tuple[int, ...]  # all modes within 1e-12 (relative) of the maximum


def linear_stability(kernel: Kernel) -> LinearStability:
    c = kernel.coefficients[1:]
    kmax = int(np.argmax(c)) + 1
    top = float(c[kmax - 1])
    if top <= 0:
        return LinearStability(math.inf, 0, top, ())
    degenerate = tuple(int(k) + 1 for k in np.flatnonzero(c >= top * (1 - 1e-12)))
    return LinearStability(1.0 / (2.0 * top), kmax, top, degenerate)


def bifurcation_couplings(kernel: Kernel, *, K_max: float) -> list[tuple[int, float]]:
    """``(k, 1/(2 W_hat(k)))`` for every mode whose branch bifurcates from uniform below ``K_max``, by K."""
    out = [
        (k, 1.0 / (2.0 * w))
        for k, w in enumerate(kernel.coefficients)
        if k >= 1 and w > 0 and 1.0 / (2.0 * w) <= K_max
    ]
    return sorted(out, key=lambda kw: kw[1])
