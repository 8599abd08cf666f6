"""Signal per tissue for each sequence, and the image formation: texture, partial volume, coil bias,
Rician noise.

Intensities are in scanner-like units (12-bit range). Relative values follow what real 1.5 T images show:
SSFP cine (bright blood and fat, dark myocardium and lungs, ACDC-like ratios), inversion-recovery LGE
(nulled myocardium, bright infarct, dark MVO core), MOLLI (Look-Locker |A - B exp(-TI/T1*)|), T1 maps (T1 in
ms, native and post-contrast from each tissue's ECV and the haematocrit), and
first-pass perfusion (gamma-variate bolus through RV, LV, then myocardium; the infarct under-perfused).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from . import phantom as ph

# One row per tissue: SSFP cine, LGE magnitude (TI nulling myocardium), native T1 at 1.5 T (ms), proton
# density, first-pass perfusion baseline, texture amplitude. Cine ratios follow ACDC patient101 (0..255):
# blood ~185, myocardium ~65, fat ~210, liver ~80, lung ~12.
_PROPERTIES: dict[int, tuple[float, float, float, float, float, float]] = {
    #             cine   LGE     T1    PD   perf  texture
    ph.AIR:     (0.0,    0.0,    0.0, 0.0,    0.0, 0.0),
    ph.FAT:     (900.0,  620.0,  260.0, 0.9,  260.0, 0.07),
    ph.MUSCLE:  (270.0,  120.0, 1010.0, 0.7,  110.0, 0.08),
    ph.LUNG:    (45.0,   30.0,  1200.0, 0.12,  25.0, 0.0),
    ph.LIVER:   (360.0,  330.0,  580.0, 0.7,  170.0, 0.06),
    ph.BLOOD:   (820.0,  560.0, 1580.0, 0.95, 120.0, 0.05),
    ph.MYO:     (230.0,  35.0,   990.0, 0.75, 110.0, 0.07),
    ph.INFARCT: (290.0,  1150.0, 1280.0, 0.8, 115.0, 0.08),
    ph.MVO:     (280.0,  70.0,  1350.0, 0.8,  115.0, 0.0),
    ph.SOFT:    (300.0,  260.0,  900.0, 0.75, 140.0, 0.25),
    ph.BONE:    (90.0,   60.0,   400.0, 0.2,   50.0, 0.0),
    ph.MARROW:  (560.0,  420.0,  550.0, 0.8,  200.0, 0.1),
    ph.STOMACH: (400.0,  300.0, 2500.0, 0.9,  120.0, 0.3),
    ph.VESSEL:  (520.0,  380.0, 1500.0, 0.9,  150.0, 0.0),
}


def _column(index: int) -> np.ndarray:
    t = np.zeros(ph.N_TISSUES, np.float32)
    for tissue, values in _PROPERTIES.items():
        t[tissue] = values[index]
    t[ph.BLOOD_RV] = t[ph.BLOOD]
    return t


CINE, LGE, T1_MS, PD, PERF_BASE, TEXTURE = (_column(i) for i in range(6))
LOCALIZER = CINE * 0.8


#: Haematocrit of the generated patient (a fraction) and post-contrast T1 of blood (ms, ~15 min after
#: 0.15 mmol/kg gadolinium at 1.5 T). With the native T1 and the extracellular volume fraction (ECV) of each
#: tissue they fix every post-contrast T1 exactly: 1/T1_post = 1/T1_native + ECV / (1 - Hct) x dR1_blood.
HEMATOCRIT = 0.42
BLOOD_T1_POST_MS = 300.0
LOOK_LOCKER_T1STAR_OVER_T1 = 0.85
_ECV: dict[int, float] = {
    ph.AIR: 0.0, ph.FAT: 0.15, ph.MUSCLE: 0.15, ph.LUNG: 0.3, ph.LIVER: 0.25, ph.BLOOD: 1.0 - HEMATOCRIT,
    ph.MYO: 0.25, ph.INFARCT: 0.55, ph.MVO: 0.35, ph.SOFT: 0.3, ph.BONE: 0.05, ph.MARROW: 0.2,
    ph.STOMACH: 0.2, ph.VESSEL: 1.0 - HEMATOCRIT,
}
ECV = np.array([_ECV.get(t, 0.0) for t in range(ph.N_TISSUES)], dtype=np.float64)
ECV[ph.BLOOD_RV] = ECV[ph.BLOOD]


def t1_table(*, post_contrast: bool = False) -> np.ndarray:
    """T1 (ms) per tissue, native or post-contrast (0 where there is no tissue)."""
    native = T1_MS.astype(np.float64)
    if not post_contrast:
        return native.astype(np.float32)
    d_r1_blood = 1.0 / BLOOD_T1_POST_MS - 1.0 / float(native[ph.BLOOD])
    r1 = np.where(native > 0, 1.0 / np.maximum(native, 1.0) + ECV / (1.0 - HEMATOCRIT) * d_r1_blood, 0.0)
    return np.where(r1 > 0, 1.0 / np.maximum(r1, 1e-12), 0.0).astype(np.float32)


def molli_table(ti_ms: float, *, post_contrast: bool = False) -> np.ndarray:
    """MOLLI magnitude signal per tissue at inversion time ``ti_ms``: the Look-Locker model
    ``|A - B exp(-TI / T1*)|`` with ``T1* = 0.85 T1`` and ``B = A (1 + T1 / T1*)``, so that the 3-parameter
    fit with the Look-Locker correction ``T1 = T1* (B / A - 1)`` returns the tissue's T1 exactly."""
    t1 = t1_table(post_contrast=post_contrast).astype(np.float64)
    t1s = np.where(t1 > 0, LOOK_LOCKER_T1STAR_OVER_T1 * t1, 1.0)
    a = 900.0 * PD
    b = a * (1.0 + 1.0 / LOOK_LOCKER_T1STAR_OVER_T1)
    return np.abs(a - b * np.exp(-ti_ms / t1s)).astype(np.float32)


def psir_table() -> np.ndarray:
    """Signed PSIR signal per tissue (zero = no signal), measured on the EMIDEC case P087 (stored there with
    zero at 2048): nulled myocardium just above zero (+50), blood pool +230, infarct about twice the blood
    pool (+420 in P087's small, partial-volumed infarct; +700 here), fat and marrow strongly positive
    (99th percentile +1,750), air and lung zero with phase noise, the MVO core as dark as the myocardium."""
    t = LGE.copy()
    for tissue, value in ((ph.AIR, 0.0), (ph.FAT, 1300.0), (ph.MUSCLE, 120.0), (ph.LUNG, 0.0), (ph.LIVER, 330.0),
                          (ph.BLOOD, 230.0), (ph.BLOOD_RV, 230.0), (ph.MYO, 45.0), (ph.INFARCT, 1000.0),
                          (ph.MVO, 20.0), (ph.SOFT, 200.0), (ph.BONE, 0.0), (ph.MARROW, 700.0),
                          (ph.STOMACH, 150.0), (ph.VESSEL, 250.0)):
        t[tissue] = value
    return t


def _gamma(t: float, t0: float, scale: float) -> float:
    if t <= t0:
        return 0.0
    x = (t - t0) / scale
    return float(x**3 * math.exp(3.0 * (1.0 - x)))  # peak 1 at x = 1


def perfusion_table(dynamic: int, *, stress: bool) -> np.ndarray:
    """Signal per tissue at one dynamic (one heartbeat) of a first-pass perfusion series."""
    t = float(dynamic)
    rv = _gamma(t, 4.0, 5.0)
    lv = _gamma(t, 9.0, 6.0) + 0.25 * min(1.0, max(0.0, (t - 18.0) / 10.0))
    myo = (0.9 if stress else 0.6) * (_gamma(t, 12.0, 9.0) + 0.35 * min(1.0, max(0.0, (t - 22.0) / 10.0)))
    tab = PERF_BASE.copy()
    tab[ph.BLOOD_RV] += 900.0 * rv
    tab[ph.BLOOD] += 900.0 * lv
    tab[ph.VESSEL] += 500.0 * lv
    tab[ph.MYO] += 230.0 * myo
    tab[ph.MUSCLE] += 60.0 * myo
    tab[ph.LIVER] += 120.0 * myo
    tab[ph.INFARCT] += 60.0 * myo
    tab[ph.MVO] += 5.0 * myo
    return tab


class PlaneFields:
    """Static per-plane fields: texture, lung vessels, coil sensitivity."""

    def __init__(self, points_lps: np.ndarray, coil_center_lps: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        shape = points_lps.shape[:2]
        self.texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 2.5)
        self.texture /= float(self.texture.std()) + 1e-6
        fine = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.9)
        self.vessel = fine > 1.96 * float(fine.std())  # ~2.5% of lung pixels
        d = np.linalg.norm(points_lps - coil_center_lps, axis=-1)
        self.bias = (0.55 + 0.75 * np.exp(-((d / 260.0) ** 2))).astype(np.float32)


def tissue_texture(tissue: np.ndarray, fields: PlaneFields) -> np.ndarray:
    """Multiplicative texture factor for a tissue map (1 + amplitude(tissue) * smooth noise)."""
    return 1.0 + TEXTURE[tissue] * fields.texture


def with_vessels(tissue: np.ndarray, fields: PlaneFields) -> np.ndarray:
    t = tissue.copy()
    t[(tissue == ph.LUNG) & fields.vessel] = ph.VESSEL
    return t


def form_image(tissue: np.ndarray, table: np.ndarray, texture: np.ndarray, fields: PlaneFields,
               noise: tuple[np.ndarray, np.ndarray], *, sigma: float, blur_px: float = 0.6,
               signed: bool = False, slab: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Signal image: intensities x texture, partial-volume blur, coil bias, then Rician noise.

    ``slab`` holds tissue maps of the same plane shifted through the slice thickness: the image is then
    the slice-profile-weighted mean (centre 1/2, the two sides 1/4 each), the through-plane partial volume
    of a thick 2-D slice. With ``signed`` (PSIR) the noise is Gaussian and the sign is kept.
    """
    img = table[tissue] * texture
    if slab:
        img = 0.5 * img + (0.5 / len(slab)) * sum(table[t] for t in slab) * texture
    if blur_px > 0:
        img = ndimage.gaussian_filter(img, blur_px, truncate=2.5)
    img *= fields.bias
    n1, n2 = noise
    if signed:
        # PSIR: where there is no signal (air, lung) the phase is random, so the background is a strong
        # salt-and-pepper noise about zero, as in real PSIR images (EMIDEC P087 air: SD 66-233 by slice)
        quiet = np.clip(1.0 - np.abs(img) / 80.0, 0.0, 1.0)
        return img + sigma * n1 + (3.0 * sigma) * quiet * n2
    return np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)


_BANKS: dict[tuple[tuple[int, int], int], NoiseBank] = {}


def noise_bank(shape: tuple[int, int], seed: int) -> NoiseBank:
    """A cached :class:`NoiseBank` (drawing one costs ~40 ms; a process keeps a few)."""
    key = (shape, seed)
    if key not in _BANKS:
        if len(_BANKS) > 8:
            _BANKS.clear()
        _BANKS[key] = NoiseBank(shape, seed)
    return _BANKS[key]


class NoiseBank:
    """Pre-drawn Gaussian noise; each image takes a seeded random crop (drawing fresh noise per image
    costs ~2.5 ms per 256x256 pair here; a crop costs ~0.05 ms)."""

    def __init__(self, shape: tuple[int, int], seed: int, n: int = 4, margin: int = 48) -> None:
        rng = np.random.default_rng([seed, 0xBA2C])
        self.shape = shape
        self.margin = margin
        self.fields = rng.standard_normal((n, 2, shape[0] + margin, shape[1] + margin)).astype(np.float32)

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k = int(rng.integers(self.fields.shape[0]))
        i, j = (int(v) for v in rng.integers(0, self.margin, 2))
        flip = bool(rng.integers(2))
        f = self.fields[k, :, i:i + self.shape[0], j:j + self.shape[1]]
        return (f[0], f[1]) if not flip else (f[1], f[0])
