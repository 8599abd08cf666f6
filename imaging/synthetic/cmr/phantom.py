"""Analytic torso + beating-heart phantom with exact ground truth.

The heart lives in its own frame: ``z`` runs along the LV long axis from the end-diastolic base plane
(``z = 0``) towards the apex, ``(a, b)`` are in-plane coordinates with ``a`` pointing from the LV axis to
the middle of the septum / RV (``phi = 0``) and ``b = u x a`` (``phi`` grows towards the inferior wall).

Every cross-section perpendicular to the long axis is exact and simple: the LV cavity and epicardium are
circles about the axis, the RV cavity is an ellipse that meets the LV epicardium at the two insertion
points ``phi = +-INSERTION_HALF_ANGLE``, and the infarct is a subendocardial band ``r < R_en + tau(psi, z) *
wall`` with its MVO core a band inside it, off the endocardium. A short-axis image is one such cross-section,
so its label areas have closed forms (circles) or
1-D quadratures (RV, infarct, AHA sectors) that are exact to < 1e-5, and voxel counts x voxel volume agree
with them to a fraction of a percent (measured in tests/synthetic/test_cmr_truth.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Tissue codes of the rendered scene (index into the intensity tables of sequences.py).
AIR, FAT, MUSCLE, LUNG, LIVER, BLOOD, MYO, INFARCT, MVO, SOFT, BONE, MARROW, STOMACH, VESSEL, BLOOD_RV = range(15)
N_TISSUES = 15

# Heart region codes (truth), mapped to ACDC / EMIDEC labels below.
R_NONE, R_LV_CAV, R_LV_MYO, R_RV_CAV, R_INFARCT, R_MVO, R_PAPILLARY = range(7)
#                          none LVcav LVmyo RVcav inf  mvo  pap
ACDC_FROM_REGION = np.array([0, 3, 2, 1, 2, 2, 3], dtype=np.uint8)
EMIDEC_FROM_REGION = np.array([0, 1, 2, 0, 3, 4, 1], dtype=np.uint8)

INSERTION_HALF_ANGLE_DEG = 75.0  # RV insertion points 150 deg apart (typical adult anatomy)
_ALPHA = math.radians(INSERTION_HALF_ANGLE_DEG)
RV_WALL_MM = 3.0
# The MVO core starts this fraction of the local infarct depth away from the endocardium: a rim of enhanced
# infarct separates it from the blood pool, as in real LGE. An MVO band touching the cavity reads (to the real
# EMIDEC network) as remote myocardium with epicardial fat outside it, and the whole infarct there is missed.
MVO_ENDOCARDIAL_RIM = 0.3


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class HeartParams:
    """Shape and motion of the heart (all lengths in mm, in the heart frame)."""

    origin_lps: tuple[float, float, float]  # ED base-plane centre of the LV
    long_axis: tuple[float, float, float]  # unit vector base -> apex (LPS)
    septal_axis: tuple[float, float, float]  # unit vector LV axis -> septum/RV, perpendicular to long_axis
    a_endo_ed_mm: float  # cavity radius at the equator, ED
    a_epi_ed_mm: float
    equator_ed_mm: float  # z of the equator at ED
    apex_epi_mm: float  # z of the epicardial apex (fixed over the cycle)
    apical_wall_ed_mm: float
    radial_shortening: float  # fraction of cavity radius lost at ES
    base_descent_mm: float  # base-plane motion towards the apex at ES
    rv_thickness_ed_mm: float  # RV cavity thickness in front of the mid septum, mid-ventricle, ED
    rv_shortening: float
    rv_apex_mm: float  # z where the RV cavity ends
    es_fraction: float  # ES position in the cycle, 0..1 (exactly on a phase)
    infarct_center_psi_deg: float
    infarct_half_width_deg: float
    infarct_z_start_mm: float  # infarct from here towards the apex
    infarct_transmurality: float  # 0..1, maximum
    mvo_fraction: float  # MVO depth relative to the infarct depth (0 = no MVO)
    mvo_half_width_deg: float

    @property
    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors (e_a, e_b, u) of the heart frame in LPS."""
        u = _unit(np.array(self.long_axis))
        ea = _unit(np.array(self.septal_axis))
        return ea, np.cross(u, ea), u


def draw_heart_params(rng: np.random.Generator, es_fraction: float) -> HeartParams:
    """A plausible adult heart with an anterior (LAD) infarct; numbers vary with the seed."""
    u = _unit(np.array([0.55, -0.45, -0.70]) + rng.normal(0, 0.04, 3))
    rv_dir = np.array([-0.7, -0.5, 0.1])
    ea = _unit(rv_dir - rv_dir.dot(u) * u)
    a_en = float(rng.uniform(24.0, 27.0))
    return HeartParams(
        origin_lps=(float(rng.uniform(8, 16)), float(rng.uniform(-8, 0)), float(rng.uniform(5, 15))),
        long_axis=tuple(u),
        septal_axis=tuple(ea),
        a_endo_ed_mm=a_en,
        a_epi_ed_mm=a_en + float(rng.uniform(8.5, 10.0)),
        equator_ed_mm=12.0,
        apex_epi_mm=float(rng.uniform(92.0, 100.0)),
        apical_wall_ed_mm=8.0,
        radial_shortening=float(rng.uniform(0.24, 0.30)),
        base_descent_mm=float(rng.uniform(10.0, 14.0)),
        rv_thickness_ed_mm=float(rng.uniform(23.0, 27.0)),
        rv_shortening=float(rng.uniform(0.35, 0.45)),
        rv_apex_mm=float(rng.uniform(76.0, 82.0)),
        es_fraction=es_fraction,
        infarct_center_psi_deg=float(rng.uniform(-10.0, 10.0)),
        infarct_half_width_deg=float(rng.uniform(70.0, 85.0)),
        infarct_z_start_mm=float(rng.uniform(35.0, 45.0)),
        infarct_transmurality=float(rng.uniform(0.85, 0.98)),
        mvo_fraction=float(rng.uniform(0.35, 0.5)),
        mvo_half_width_deg=float(rng.uniform(12.0, 20.0)),
    )


def contraction(params: HeartParams, cycle_fraction: np.ndarray | float) -> np.ndarray:
    """Contraction state f in [0, 1] over the cycle: 0 at ED (t = 0), 1 exactly at ES, smooth."""
    t = np.mod(np.asarray(cycle_fraction, dtype=np.float64), 1.0)
    es = params.es_fraction
    sys = 0.5 * (1.0 - np.cos(np.pi * np.clip(t / es, 0, 1)))
    # fast early filling, diastasis, atrial kick: a smooth monotone decay from 1 to 0
    s = np.clip((t - es) / (1.0 - es), 0, 1)
    dia = 1.0 - (0.75 * np.sin(0.5 * np.pi * np.clip(s / 0.45, 0, 1)) + 0.25 * np.clip((s - 0.75) / 0.25, 0, 1) ** 2)
    dia = np.clip(dia, 0.0, 1.0)
    return np.where(t <= es, sys, dia)


@dataclass(frozen=True)
class CrossSection:
    """Radii of one short-axis cross-section (mm); zero where the structure is absent."""

    r_endo: float
    r_epi: float
    rv_d: float  # RV ellipse centre distance along e_a
    rv_ra: float  # RV ellipse semi-axis along e_a (0: no RV)
    rv_rb: float
    infarct: bool


class HeartModel:
    """Evaluate the heart at contraction state ``f`` (vectorised over points)."""

    def __init__(self, params: HeartParams) -> None:
        self.p = params
        ea, eb, u = params.frame
        self.rot = np.stack([ea, eb, u])  # rows: heart-frame axes in LPS
        self.origin = np.array(params.origin_lps, dtype=np.float64)

    # ---- scalar shape laws -------------------------------------------------------------------
    def shape(self, f: float) -> dict[str, float]:
        p = self.p
        a_en = p.a_endo_ed_mm * (1.0 - p.radial_shortening * f)
        # wall thickens as the cavity shrinks (myocardial volume roughly conserved)
        a_ep = math.sqrt(a_en**2 + (p.a_epi_ed_mm**2 - p.a_endo_ed_mm**2) * (1.0 + 0.04 * f))
        base = p.base_descent_mm * f
        equator = p.equator_ed_mm + 0.5 * p.base_descent_mm * f
        apex_en = p.apex_epi_mm - p.apical_wall_ed_mm * (1.0 + 0.35 * f)
        return {"a_en": a_en, "a_ep": a_ep, "base": base, "equator": equator, "apex_en": apex_en,
                "apex_ep": p.apex_epi_mm, "rv_t": p.rv_thickness_ed_mm * (1.0 - p.rv_shortening * f)}

    def radii(self, z: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
        """Endo- and epicardial radius at heart-frame ``z`` (0 where absent)."""
        s = self.shape(f)
        z = np.asarray(z, dtype=np.float64)
        inside = z >= s["base"]
        q_en = 1.0 - ((z - s["equator"]) / (s["apex_en"] - s["equator"])) ** 2
        q_ep = 1.0 - ((z - s["equator"]) / (s["apex_ep"] - s["equator"])) ** 2
        r_en = np.where(inside & (z < s["apex_en"]), s["a_en"] * np.sqrt(np.clip(q_en, 0, None)), 0.0)
        r_ep = np.where(inside & (z < s["apex_ep"]), s["a_ep"] * np.sqrt(np.clip(q_ep, 0, None)), 0.0)
        return r_en, r_ep

    def rv_thickness(self, z: np.ndarray, r_ep: np.ndarray, f: float) -> np.ndarray:
        """RV cavity thickness (mm) in front of the mid septum at heart-frame ``z``."""
        s = self.shape(f)
        z = np.asarray(z, dtype=np.float64)
        zc = 0.5 * (s["base"] + self.p.rv_apex_mm) - 8.0
        half = self.p.rv_apex_mm - zc
        prof = np.sqrt(np.clip(1.0 - ((z - zc) / half) ** 2, 0, None))
        return np.where((z >= s["base"]) & (z < self.p.rv_apex_mm) & (r_ep > 0), s["rv_t"] * prof, 0.0)

    @staticmethod
    def rv_profile(phi: np.ndarray, widen: float = 0.0) -> np.ndarray:
        """Crescent shape: RV thickness relative to its maximum at angle ``phi`` (rad) from the septum.

        The crescent peaks slightly anterior of the mid septum and reaches zero at the insertion points.
        """
        x = (np.asarray(phi) + 0.12 * _ALPHA * (1 - (np.asarray(phi) / _ALPHA) ** 2)) / (_ALPHA + widen)
        return np.clip(1.0 - x**2, 0, None) ** 0.85

    def infarct_depth(self, psi_deg: np.ndarray, z: np.ndarray, f: float) -> tuple[np.ndarray, np.ndarray]:
        """Transmural fraction of infarct and of MVO at AHA angle ``psi`` (deg) and ``z``."""
        p = self.p
        s = self.shape(f)
        dpsi = np.abs((np.asarray(psi_deg) - p.infarct_center_psi_deg + 180.0) % 360.0 - 180.0)
        taper = 25.0
        w = np.clip((p.infarct_half_width_deg - dpsi) / taper, 0, 1)
        w = np.sin(0.5 * np.pi * w) ** 2
        # the infarct follows the wall: its z range scales with the (moving) base-apex distance
        zz = (np.asarray(z) - s["base"]) / (s["apex_ep"] - s["base"])
        z0 = p.infarct_z_start_mm / p.apex_epi_mm
        wz = np.sin(0.5 * np.pi * np.clip((zz - z0) / 0.12, 0, 1)) ** 2
        tau = p.infarct_transmurality * w * wz
        wm = np.clip((p.mvo_half_width_deg - dpsi) / 15.0, 0, 1)
        wmz = np.clip((zz - z0 - 0.12) / 0.12, 0, 1)
        tau_mvo = p.mvo_fraction * tau * np.sin(0.5 * np.pi * wm) ** 2 * np.sin(0.5 * np.pi * wmz) ** 2
        tau = np.where(tau > 0.03, tau, 0.0)
        tau_mvo = np.where(tau_mvo > 0.03, tau_mvo, 0.0)
        return tau, tau_mvo

    # ---- points -------------------------------------------------------------------------------
    def to_heart(self, points_lps: np.ndarray) -> np.ndarray:
        """Heart-frame coordinates (a, b, z) of LPS points (float32)."""
        return ((points_lps - self.origin) @ self.rot.T).astype(np.float32)

    def bounding_box(self, hp: np.ndarray) -> tuple[slice, slice]:
        """Rows/cols of an image (heart-frame points ``(rows, cols, 3)``) that can contain the heart."""
        a, b, z = hp[..., 0], hp[..., 1], hp[..., 2]
        reach = self.p.a_epi_ed_mm + self.p.rv_thickness_ed_mm + RV_WALL_MM + 14.0
        cand = (a * a + b * b < reach**2) & (z > -self.p.base_descent_mm - 60.0) & (z < self.p.apex_epi_mm + 12.0)
        r = np.flatnonzero(cand.any(axis=1))
        c = np.flatnonzero(cand.any(axis=0))
        if r.size == 0:
            return slice(0, 0), slice(0, 0)
        return slice(int(r[0]), int(r[-1]) + 1), slice(int(c[0]), int(c[-1]) + 1)

    def regions(self, hp: np.ndarray, f: float, *, infarct: bool) -> tuple[np.ndarray, np.ndarray]:
        """Heart region code (R_*) and a tissue override (255 = none) per heart-frame point."""
        a, b, z = hp[..., 0], hp[..., 1], hp[..., 2]
        r = np.hypot(a, b)
        phi = np.arctan2(b, a)
        r_en, r_ep = self.radii(z, f)
        region = np.zeros(r.shape, np.uint8)
        tissue = np.full(r.shape, 255, np.uint8)
        s = self.shape(f)

        # pericardial fat envelope and the atria above the base
        # patchy epicardial fat: thick in the grooves, thin or absent elsewhere
        fat_t = 0.6 + 3.0 * np.exp(-(((np.abs(phi) - _ALPHA) / 0.35) ** 2))
        q_env = 1.0 - ((z - s["equator"]) / (s["apex_ep"] + fat_t - s["equator"])) ** 2
        r_env = (s["a_ep"] + fat_t) * np.sqrt(np.clip(q_env, 0, None))
        env = (r < r_env) & (z >= s["base"])  # no fat cap above the base: a grey ring round the LA reads as LV
        thick = self.rv_thickness(z, r_ep, f)
        rv_outer = r_ep + thick * self.rv_profile(phi)
        rv_wall_outer = r_ep + (thick + RV_WALL_MM) * self.rv_profile(phi, 0.1) * (thick > 0)
        groove = 1.0 + 5.0 * np.clip(np.abs(phi) / _ALPHA, 0, 1) ** 4  # fat in the interventricular grooves
        env |= (r < rv_wall_outer + groove) & (thick > 0) & (np.abs(phi) < _ALPHA + 0.25)
        tissue[env] = FAT
        # atria (blood with a thin wall) above the moving base plane: flattened ovals, not discs (a round
        # bright atrium over the LV axis was labelled LV cavity by the real network)
        for centre, (ra, rb) in (((-8.0, 12.0), (30.0, 14.0)), ((30.0, -4.0), (15.0, 21.0))):  # LA, RA
            zc = s["base"] - 24.0
            qa = (a - centre[0]) ** 2 / ra**2 + (b - centre[1]) ** 2 / rb**2 + ((z - zc) / 26.0) ** 2
            atrium = (qa < 1.0) & (z < s["base"])
            wall = (qa < 1.22) & (z < s["base"] + 2.0) & ~atrium
            tissue[wall & (tissue != BLOOD)] = MYO
            tissue[atrium] = BLOOD

        # RV: wall, then cavity (a crescent on the LV epicardium between the insertion points)
        tissue[r < rv_wall_outer] = MYO
        rv_cav = (r < rv_outer) & (np.abs(phi) < _ALPHA)
        region[rv_cav] = R_RV_CAV
        tissue[rv_cav] = BLOOD_RV
        # LV
        myo = r < r_ep
        region[myo] = R_LV_MYO
        tissue[myo] = MYO
        cav = r < r_en
        region[cav] = R_LV_CAV
        tissue[cav] = BLOOD
        # papillary muscles: blobs in the cavity near the lateral wall (labelled cavity, ACDC convention)
        zz = (z - s["base"]) / (s["apex_ep"] - s["base"])
        pap_on = (zz > 0.25) & (zz < 0.75) & (r_en > 8.0)
        pr = (4.5 + 1.5 * f) * np.sqrt(np.clip(np.sin(np.pi * np.clip((zz - 0.25) / 0.5, 0, 1)), 0, None))
        for ang in (math.radians(130.0), math.radians(-135.0)):
            cx, cy = (r_en - 0.8 * pr) * math.cos(ang), (r_en - 0.8 * pr) * math.sin(ang)
            blob = pap_on & cav & ((a - cx) ** 2 + (b - cy) ** 2 < pr**2)
            region[blob] = R_PAPILLARY
            tissue[blob] = MYO
        if infarct:
            psi = (np.degrees(phi) + INSERTION_HALF_ANGLE_DEG) % 360.0
            tau, tau_m = self.infarct_depth(psi, z, f)
            wall = r_ep - r_en
            in_myo = (r >= r_en) & (r < r_ep)
            inf = in_myo & (r < r_en + tau * wall)
            region[inf] = R_INFARCT
            tissue[inf] = INFARCT
            mvo_in = r_en + MVO_ENDOCARDIAL_RIM * tau * wall
            mvo = in_myo & (r >= mvo_in) & (r < mvo_in + tau_m * wall)
            region[mvo] = R_MVO
            tissue[mvo] = MVO
        return region, tissue

    # ---- analytic areas of one short-axis cross-section --------------------------------------------
    def section_areas(self, z: float, f: float, *, n_theta: int = 7200) -> SectionAreas:
        """Exact label areas (mm^2) of the cross-section at ``z``; per-psi densities for AHA sectors."""
        r_en, r_ep = (float(v) for v in self.radii(np.array(z), f))
        thick = float(self.rv_thickness(np.array(z), np.array(r_ep), f))
        phi = (np.arange(n_theta) + 0.5) / n_theta * 2 * _ALPHA - _ALPHA
        outer = r_ep + thick * self.rv_profile(phi)
        rv = float(np.sum(0.5 * (outer**2 - r_ep**2)) * (2 * _ALPHA / n_theta))
        psi = (np.arange(n_theta) + 0.5) / n_theta * 360.0
        tau, tau_m = self.infarct_depth(psi, np.full(n_theta, z), f)
        w = r_ep - r_en
        dth = 2 * math.pi / n_theta
        infarct = 0.5 * ((r_en + tau * w) ** 2 - r_en**2) * dth
        mvo_in = r_en + MVO_ENDOCARDIAL_RIM * tau * w
        mvo = 0.5 * ((mvo_in + tau_m * w) ** 2 - mvo_in**2) * dth
        return SectionAreas(
            r_endo_mm=r_en, r_epi_mm=r_ep, lv_cavity_mm2=math.pi * r_en**2,
            lv_myo_mm2=math.pi * (r_ep**2 - r_en**2), rv_cavity_mm2=rv,
            infarct_mm2=float(np.sum(infarct)), mvo_mm2=float(np.sum(mvo)), psi_deg=psi,
            myo_density=np.full(n_theta, 0.5 * (r_ep**2 - r_en**2) * dth), infarct_density=infarct,
            mvo_density=mvo)


@dataclass(frozen=True, eq=False)
class SectionAreas:
    """Analytic areas of one short-axis cross-section; ``*_density`` = area per angular step of ``psi_deg``."""

    r_endo_mm: float
    r_epi_mm: float
    lv_cavity_mm2: float
    lv_myo_mm2: float
    rv_cavity_mm2: float
    infarct_mm2: float
    mvo_mm2: float
    psi_deg: np.ndarray
    myo_density: np.ndarray
    infarct_density: np.ndarray
    mvo_density: np.ndarray


# ---------------------------------------------------------------------------------------------------
# the torso around the heart (static)


# abdominal structures under the diaphragm (centre xyz, semi-axes xyz, tissue): what fills the lower part
# of basal and apical short-axis images in real exams
_ABDOMEN: tuple[tuple[float, float, float, float, float, float, int], ...] = (
    (95.0, 55.0, -95.0, 38.0, 30.0, 45.0, LIVER),  # spleen
    (60.0, 85.0, -150.0, 28.0, 24.0, 50.0, MUSCLE),  # left kidney
    (-55.0, 85.0, -160.0, 28.0, 24.0, 50.0, MUSCLE),
    (40.0, -45.0, -120.0, 22.0, 16.0, 18.0, FAT),
    (15.0, -60.0, -135.0, 16.0, 12.0, 16.0, STOMACH),
    (55.0, -55.0, -150.0, 20.0, 14.0, 18.0, SOFT),
    (-10.0, -40.0, -150.0, 18.0, 14.0, 20.0, FAT),
    (30.0, 10.0, -80.0, 12.0, 10.0, 10.0, SOFT),  # gastro-oesophageal junction (collapsed, no fluid)
)


@dataclass(frozen=True)
class TorsoParams:
    body_center_xy: tuple[float, float] = (0.0, 12.0)
    body_semi_axes_xy: tuple[float, float] = (168.0, 118.0)
    subcut_fat_mm: float = 14.0
    muscle_mm: float = 11.0


def torso_tissue(points_lps: np.ndarray, tp: TorsoParams) -> np.ndarray:
    """Tissue code of the static torso (no heart) at each point."""
    x, y, z = points_lps[..., 0], points_lps[..., 1], points_lps[..., 2]
    cx, cy = tp.body_center_xy
    ax, ay = tp.body_semi_axes_xy
    t = np.full(x.shape, AIR, np.uint8)

    def ell2(sx: float, sy: float) -> np.ndarray:
        return ((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2

    t[ell2(ax, ay) < 1] = FAT
    inner1 = ell2(ax - tp.subcut_fat_mm, ay - tp.subcut_fat_mm) < 1
    t[inner1] = MUSCLE
    inner2 = ell2(ax - tp.subcut_fat_mm - tp.muscle_mm, ay - tp.subcut_fat_mm - tp.muscle_mm) < 1
    t[inner2] = SOFT

    def ellipsoid(c: tuple[float, float, float], r: tuple[float, float, float]) -> np.ndarray:
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 < 1

    t[ellipsoid((-70.0, 12.0, 40.0), (76.0, 96.0, 130.0)) & inner2] = LUNG
    t[ellipsoid((80.0, 20.0, 38.0), (72.0, 92.0, 122.0)) & inner2] = LUNG
    t[ellipsoid((-45.0, 20.0, -118.0), (120.0, 95.0, 78.0)) & inner2] = LIVER
    # stomach under the left hemidiaphragm: a lobulated sac, not a sphere, with a gas cap on the
    # anterior (non-dependent, supine) side; a bright round sac next to the apex is read as a ventricle
    gx, gy, gz = (x - 78.0) / 46.0, (y + 8.0) / 42.0, (z + 100.0) / 40.0
    lobes = 1.0 + 0.22 * np.sin(3.0 * np.arctan2(gy, gx) + 0.7) * np.cos(2.0 * np.arctan2(gz, gx) - 0.4)
    stomach = (gx * gx + gy * gy + gz * gz < lobes**2) & inner2
    t[stomach] = STOMACH
    t[stomach & (gy < -0.35 * lobes)] = AIR
    for (bx, by, bz, rx, ry, rz, tissue_code) in _ABDOMEN:  # bowel loops, spleen, kidneys: texture below
        t[ellipsoid((bx, by, bz), (rx, ry, rz)) & inner2] = tissue_code
    # spine (vertebral body: cortex + marrow) and descending aorta, along z
    rs = np.hypot(x - 0.0, y - 98.0)
    t[rs < 19.0] = BONE
    t[rs < 15.5] = MARROW
    t[(np.hypot(x - 24.0, y - 70.0) < 12.0) & (z < 60.0)] = BLOOD
    # aortic arch / ascending aorta above the heart
    t[(np.hypot(x + 12.0, y + 8.0) < 15.0) & (z > 45.0) & (z < 110.0)] = BLOOD
    return t


def scene(points_lps: np.ndarray, heart: HeartModel, f: float, tp: TorsoParams, *, infarct: bool,
          torso: np.ndarray | None = None, heart_frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tissue, heart region) codes at each point of an image plane ``(rows, cols, 3)``.

    The torso is drawn first, then the heart on top; the heart is evaluated only inside the bounding
    box of the pixels that can hold it (about a fifth of a short-axis image), which is what makes a
    3,000-image exam fast. ``torso`` and ``heart_frame`` (``heart.to_heart(points)``) may be passed in
    when the same plane is rendered at many phases.
    """
    tissue = torso_tissue(points_lps, tp) if torso is None else torso.copy()
    region = np.zeros(tissue.shape, np.uint8)
    hp = heart.to_heart(points_lps) if heart_frame is None else heart_frame
    rows, cols = heart.bounding_box(hp)
    if rows.stop > rows.start and cols.stop > cols.start:
        reg, override = heart.regions(hp[rows, cols], f, infarct=infarct)
        region[rows, cols] = reg
        sub = tissue[rows, cols]
        m = override != 255
        sub[m] = override[m]
    return tissue, region
