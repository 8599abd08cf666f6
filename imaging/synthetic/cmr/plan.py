"""The exam layout: which series, how many slices and frames, so that the sizes add up to ``n_images``.

Fixed part (per tier): 3-plane localizer, cine SAX (slices x phases), cine 2/3/4-chamber (phases each),
LGE SAX magnitude + PSIR (one image per SAX slice each), MOLLI source (3 slices x 8 inversion times) and its
T1 map (3), and with ``post_contrast_t1`` a second MOLLI source + T1 map pair acquired after contrast. The rest goes to first-pass perfusion (3 slices x dynamics; split into a stress and a rest
series above 120 dynamics), and ``n_images - fixed`` modulo 3 extra localizer images make the total exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from zeroclick.imaging.errors import InvalidInputError

MOLLI_TIS_MS: tuple[float, ...] = (102.0, 182.0, 262.0, 1089.0, 1171.0, 1251.0, 2078.0, 3066.0)
N_MAP_SLICES = 3
MIN_PERFUSION_DYNAMICS = 10
SPLIT_PERFUSION_ABOVE = 120

# (cine SAX slices, cine phases), most detailed first
TIERS: tuple[tuple[int, int], ...] = (
    (14, 30), (13, 30), (12, 30), (12, 25), (12, 20), (11, 16), (10, 12), (10, 10),
)


@dataclass(frozen=True)
class SeriesLayout:
    key: str  # generator key (headers.STYLES)
    expected_class: str  # zeroclick.imaging.dicom classification label
    n_slices: int
    n_frames: int  # phases, inversion times or dynamics per slice

    @property
    def n_images(self) -> int:
        return self.n_slices * self.n_frames


@dataclass(frozen=True)
class ExamLayout:
    n_sax_slices: int
    n_phases: int
    series: tuple[SeriesLayout, ...]

    @property
    def n_images(self) -> int:
        return sum(s.n_images for s in self.series)


def _fixed(n_sax: int, n_phases: int, post_contrast_t1: bool = False) -> list[SeriesLayout]:
    post = [SeriesLayout("t1_molli_source_post", "t1_molli_source", N_MAP_SLICES, len(MOLLI_TIS_MS)),
            SeriesLayout("t1_map_post", "t1_map", N_MAP_SLICES, 1)] if post_contrast_t1 else []
    return [
        SeriesLayout("cine_sax", "cine_sax", n_sax, n_phases),
        SeriesLayout("cine_lax_2ch", "cine_lax_2ch", 1, n_phases),
        SeriesLayout("cine_lax_3ch", "cine_lax_3ch", 1, n_phases),
        SeriesLayout("cine_lax_4ch", "cine_lax_4ch", 1, n_phases),
        SeriesLayout("lge_mag", "lge_mag", n_sax, 1),
        SeriesLayout("lge_psir", "lge_psir", n_sax, 1),
        SeriesLayout("t1_molli_source", "t1_molli_source", N_MAP_SLICES, len(MOLLI_TIS_MS)),
        SeriesLayout("t1_map", "t1_map", N_MAP_SLICES, 1),
        *post,
    ]


def minimum_images(*, post_contrast_t1: bool = False) -> int:
    """The smallest exam the generator makes (smallest tier, 10 perfusion dynamics)."""
    n_sax, n_phases = TIERS[-1]
    return 9 + sum(s.n_images for s in _fixed(n_sax, n_phases, post_contrast_t1)) + 3 * MIN_PERFUSION_DYNAMICS


def plan_exam(n_images: int, *, post_contrast_t1: bool = False) -> ExamLayout:
    """Series sizes adding up exactly to ``n_images``.

    Raises
    ------
    InvalidInputError
        Below :func:`minimum_images` (a whole exam cannot be that small).
    """
    if n_images < minimum_images(post_contrast_t1=post_contrast_t1):
        raise InvalidInputError(
            f"n_images={n_images} is too small for a whole exam: the minimum is "
            f"{minimum_images(post_contrast_t1=post_contrast_t1)} "
            f"(cine SAX {TIERS[-1][0]} slices x {TIERS[-1][1]} phases, LAX, LGE, MOLLI and "
            f"{MIN_PERFUSION_DYNAMICS} perfusion dynamics); ask for more images."
        )
    for n_sax, n_phases in TIERS:
        fixed = _fixed(n_sax, n_phases, post_contrast_t1)
        rest = n_images - 9 - sum(s.n_images for s in fixed)
        if rest >= 3 * MIN_PERFUSION_DYNAMICS:
            break
    extra_localizers = rest % 3
    dynamics = rest // 3
    series = [SeriesLayout("localizer", "localizer", 9 + extra_localizers, 1), *fixed]
    if dynamics > SPLIT_PERFUSION_ABOVE:
        stress = (dynamics + 1) // 2
        series.append(SeriesLayout("perfusion_stress", "perfusion", 3, stress))
        series.append(SeriesLayout("perfusion_rest", "perfusion", 3, dynamics - stress))
    else:
        series.append(SeriesLayout("perfusion_stress", "perfusion", 3, dynamics))
    layout = ExamLayout(n_sax, n_phases, tuple(series))
    assert layout.n_images == n_images, (layout.n_images, n_images)
    return layout
