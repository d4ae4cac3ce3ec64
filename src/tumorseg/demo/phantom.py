"""Built-in synthetic demo dataset: BraTS-like multi-modal brain MRI with tumours.

Every case is generated from ``(seed, case)`` alone, so the workflow's DAG can be built
from the config (:func:`case_table`) without reading any file, and the same seed gives the
same files, bit for bit (on one machine and software stack).

What is simulated
-----------------
- Subjects (``sub001`` ...) are spread round-robin over scanners ``siteA``, ``siteB``, ...;
  the first ``n_second_sessions`` subjects get a second session, the last ``n_unlabelled``
  subjects have no label file. Case IDs read ``<scanner>_<subject>_ses<k>``.
- Anatomy, from ``(seed, subject)``, shared by the sessions of a subject: an ellipsoidal,
  skull-stripped brain with a smooth random shape, cortex with sulci, white matter, deep
  grey matter and lateral ventricles; a tumour (irregular ellipsoid) with necrotic core
  (label 1), enhancing rim (4) and edema (2), or, for about a quarter of the subjects, a
  non-enhancing core (label 1 only). A second session moves the head by up to 2 mm and
  changes the tumour's size by up to 15 %.
- Scanner effects, from ``(seed, scanner)``: a global intensity scale (0.6-1.8x, plus a
  per-modality factor), a multiplicative bias field (amplitude and coil gradient per
  scanner, pattern per case) and Rician noise (level per scanner) inside the brain.
- Storage: int16 images and a uint8 label (BraTS 2017 values 0, 1, 2, 4) as compressed
  NIfTI, on the BraTS grid (240x240x155, 1 mm, LPS) except for ``siteC``, which stores its
  scans at 1.2 mm, RAS orientation, 200x200x130 voxels (same head position), so that
  native-space handling is exercised by every demo run.

Generation is analytic in physical space; smooth random fields are separable Gaussian
filters of white noise on a lattice fixed in the subject's head frame, so they are fast and
independent of the grid a scanner stores its scans on.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from tumorseg.errors import InputError
from tumorseg.io.atomic import atomic_path
from tumorseg.io.grid import IDENTITY_DIRECTION
from tumorseg.io.layouts import BRATS_MODALITIES  # the demo's modalities, in order
from tumorseg.io.sheet import SAFE_ID

MAX_SCANNERS = 6
#: scanner names, in order
SCANNERS = tuple(f"site{string.ascii_uppercase[i]}" for i in range(MAX_SCANNERS))
#: the scanner that stores its scans on another grid than BraTS
OTHER_GRID_SCANNER = "siteC"

_BRATS_SIZE = (240, 240, 155)
_BRATS_ORIGIN = (0.0, -239.0, 0.0)
#: physical centre (LPS, mm) of the BraTS grid; every scanner's grid is centred on it
_CENTRE = tuple(o + (n - 1) / 2 for o, n in zip(_BRATS_ORIGIN, _BRATS_SIZE, strict=True))
_OTHER_SIZE = (200, 200, 130)
_OTHER_SPACING = 1.2
_OTHER_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # RAS

#: tissues in painting order (later ones cover earlier ones)
_TISSUES = ("wm", "gm", "deepgm", "csf", "edema", "core", "necrosis")
#: base intensities per modality: wm, gm, deep gm, csf, edema, enhancing, necrosis, and
#: the non-enhancing core used instead of the enhancing rim for subjects without one
_INTENSITY = {
    #         wm    gm   dgm   csf  edema   enh   nec   net
    "flair": (380, 470, 440, 90, 900, 700, 420, 820),
    "t1": (680, 470, 540, 180, 430, 500, 250, 380),
    "t1ce": (700, 490, 560, 200, 450, 1350, 210, 400),
    "t2": (330, 520, 460, 1500, 980, 750, 1250, 900),
}
_P_NO_ENHANCING = 0.25
_RAMP_MM = 1.0  # width of the partial-volume ramp at tissue borders


def _stable_hash(text: str) -> int:
    """A 64-bit integer hash of ``text`` that is the same in every process (unlike hash())."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _rng(seed: int, kind: str, name: str, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), _stable_hash(kind), _stable_hash(name), stream])


# --------------------------------------------------------------------------- case table


def case_table(
    n_scanners: int, n_subjects: int, n_second_sessions: int, n_unlabelled: int
) -> pd.DataFrame:
    """The demo's cases (no file is read): columns ``case``, ``subject``, ``scanner``,
    ``session`` (int), ``labelled`` (bool), sorted by case.

    Subject ``i`` (``sub001`` ...) is scanned on ``SCANNERS[(i - 1) % n_scanners]``; the first
    ``n_second_sessions`` subjects have two sessions; the last ``n_unlabelled`` subjects have
    no label. Case IDs read ``<scanner>_<subject>_ses<k>``.
    """
    checks = {
        "n_scanners": (n_scanners, 1, MAX_SCANNERS),
        "n_subjects": (n_subjects, 1, 999),
        "n_second_sessions": (n_second_sessions, 0, n_subjects),
        "n_unlabelled": (n_unlabelled, 0, n_subjects),
    }
    for key, (value, lo, hi) in checks.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InputError(f"demo.{key} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise InputError(
                f"demo.{key} is {value}; it must lie between {lo} and {hi}"
                + (" (demo.n_subjects)" if key in ("n_second_sessions", "n_unlabelled") else "")
            )
    rows = []
    for i in range(1, n_subjects + 1):
        subject = f"sub{i:03d}"
        scanner = SCANNERS[(i - 1) % n_scanners]
        labelled = i <= n_subjects - n_unlabelled
        for session in range(1, 3 if i <= n_second_sessions else 2):
            rows.append(
                {
                    "case": f"{scanner}_{subject}_ses{session}",
                    "subject": subject,
                    "scanner": scanner,
                    "session": session,
                    "labelled": labelled,
                }
            )
    df = pd.DataFrame(rows).sort_values("case", kind="stable").reset_index(drop=True)
    return df.astype({"session": "int64", "labelled": "bool"})


# --------------------------------------------------------------------------- grids


def scanner_grid(scanner: str) -> dict:
    """Where ``scanner`` stores its scans: ``size``, ``spacing``, ``origin`` (x, y, z) and
    ``direction`` (row-major 3x3, ITK/LPS), as
    :meth:`tumorseg.io.grid.Grid.from_dict` reads.

    ``siteC``: 1.2 mm isotropic, RAS orientation, 200x200x130, centred like the BraTS grid;
    any other scanner: the BraTS grid (240x240x155, 1 mm, identity direction, origin
    (0, -239, 0)).
    """
    if scanner != OTHER_GRID_SCANNER:
        return {
            "size": _BRATS_SIZE,
            "spacing": (1.0, 1.0, 1.0),
            "origin": _BRATS_ORIGIN,
            "direction": IDENTITY_DIRECTION,
        }
    signs = np.diag(np.reshape(_OTHER_DIRECTION, (3, 3)))
    origin = tuple(
        round(float(c - s * _OTHER_SPACING * (n - 1) / 2), 6)
        for c, s, n in zip(_CENTRE, signs, _OTHER_SIZE, strict=True)
    )
    return {
        "size": _OTHER_SIZE,
        "spacing": (_OTHER_SPACING,) * 3,
        "origin": origin,
        "direction": _OTHER_DIRECTION,
    }


def _axis_coords(grid: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical coordinate of every index along each axis, in (z, y, x) order (axis-aligned
    grids only)."""
    d = np.reshape(np.asarray(grid["direction"], dtype=float), (3, 3))
    if not np.allclose(d, np.diag(np.diag(d))):
        raise ValueError("demo grids must be axis-aligned")
    xyz = [
        grid["origin"][a] + d[a, a] * grid["spacing"][a] * np.arange(grid["size"][a])
        for a in range(3)
    ]
    return xyz[2], xyz[1], xyz[0]


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SubjectParams:
    """Anatomy and tumour of one subject (lengths in mm, LPS head frame)."""

    offset: tuple[float, float, float]  # head centre minus grid centre (x, y, z)
    semi_axes: tuple[float, float, float]  # brain ellipsoid (x, y, z)
    ventricle_scale: float
    tissue_gain: dict[str, tuple[float, ...]]  # per modality, per intensity column
    enhancing: bool  # False: non-enhancing core, no label 4
    tumour_centre: tuple[float, float, float]  # relative to the head centre (x, y, z)
    tumour_stretch: tuple[float, float, float]  # anisotropy (x, y, z)
    r_edema: float  # outer radius of edema
    r_core: float  # outer radius of the tumour core (enhancing rim or non-enhancing core)
    r_necrosis: float  # radius of the necrotic core (enhancing tumours)


def subject_params(seed: int, subject: str) -> SubjectParams:
    """The anatomy and tumour of ``subject`` (depends on ``(seed, subject)`` only)."""
    rng = _rng(seed, "subject", subject)
    offset = tuple(float(v) for v in rng.uniform(-2.0, 2.0, 3))
    semi = (
        float(rng.uniform(60.0, 67.0)),
        float(rng.uniform(76.0, 82.0)),
        float(rng.uniform(54.0, 60.0)),
    )
    ventricle_scale = float(rng.uniform(0.7, 1.5))
    n_cols = len(next(iter(_INTENSITY.values())))
    gains = {}
    for mod in BRATS_MODALITIES:
        g = rng.uniform(0.95, 1.05, n_cols)
        g[4:] *= rng.uniform(0.85, 1.15, n_cols - 4)  # tumour contrasts vary more
        gains[mod] = tuple(float(v) for v in g)
    enhancing = bool(rng.random() >= _P_NO_ENHANCING)
    r_edema = float(rng.uniform(15.0, 36.0))
    r_core = float(np.clip(r_edema * rng.uniform(0.4, 0.65), 8.0, 20.0))
    rim = float(rng.uniform(3.0, 6.0))
    r_necrosis = max(r_core - rim, 3.0)
    stretch = tuple(float(v) for v in rng.uniform(0.85, 1.15, 3))
    # centre: a random direction, as far out as lets the (largest) core stay inside the brain
    u = rng.standard_normal(3) * (1.6, 1.0, 0.8)  # mostly within one hemisphere
    u /= np.linalg.norm(u)
    reach = 1.15 * 1.15 * 1.3 * r_core / min(semi)  # session growth * stretch * shape
    q = float(rng.uniform(0.3, 1.0)) * (0.85 - reach)
    centre = tuple(float(v) for v in q * np.asarray(semi) * u)
    return SubjectParams(
        offset=offset,
        semi_axes=semi,
        ventricle_scale=ventricle_scale,
        tissue_gain=gains,
        enhancing=enhancing,
        tumour_centre=centre,
        tumour_stretch=stretch,
        r_edema=r_edema,
        r_core=r_core,
        r_necrosis=r_necrosis,
    )


@dataclass(frozen=True)
class ScannerParams:
    scale: dict[str, float]  # global intensity scale per modality
    bias_amplitude: float
    bias_gradient: tuple[float, float, float]  # unit vector (x, y, z) of the coil gradient
    noise: float  # noise sigma as a fraction of the white-matter intensity


def scanner_params(seed: int, scanner: str) -> ScannerParams:
    """Intensity scale, bias field and noise level of ``scanner`` (from ``(seed, scanner)``)."""
    rng = _rng(seed, "scanner", scanner)
    scale = float(rng.uniform(0.6, 1.8))
    per_mod = {m: float(scale * rng.uniform(0.85, 1.15)) for m in BRATS_MODALITIES}
    amplitude = float(rng.uniform(0.08, 0.25))
    v = rng.standard_normal(3)
    v /= np.linalg.norm(v)
    noise = float(rng.uniform(0.015, 0.045))
    return ScannerParams(per_mod, amplitude, tuple(float(x) for x in v), noise)


# --------------------------------------------------------------------------- fields


def _ramp(x: np.ndarray) -> np.ndarray:
    """Partial-volume fraction of a signed distance (mm, positive inside)."""
    return np.clip(0.5 + x / _RAMP_MM, 0.0, 1.0)


def _smooth_field(
    rng: np.random.Generator,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    half: tuple[float, float, float],
    sigma: float,
) -> np.ndarray:
    """A unit-variance Gaussian random field (correlation length ``sigma`` mm) on the grid
    ``coords`` (z, y, x) in a frame whose lattice of white noise spans ``[-half, half]``
    (z, y, x) plus a margin: the draw depends on ``half`` and ``sigma``, not on the grid."""
    mats = []
    shape = []
    for c, h in zip(coords, half, strict=True):
        n = int(np.ceil(2 * h / sigma)) + 5
        nodes = -h - 2 * sigma + sigma * np.arange(n)
        g = np.exp(-0.5 * ((c[:, None] - nodes[None, :]) / sigma) ** 2)
        g /= np.sqrt((g**2).sum(axis=1, keepdims=True)) + 1e-12
        mats.append(g.astype(np.float32))
        shape.append(n)
    noise = rng.standard_normal(tuple(shape), dtype=np.float32)
    gz, gy, gx = mats
    t = noise @ gx.T  # (nz, ny, X)
    t = np.matmul(gy, t)  # (nz, Y, X)
    return np.tensordot(gz, t, axes=([1], [0]))  # (Z, Y, X)


def _ellipsoid_depth(dz: np.ndarray, dy: np.ndarray, dx: np.ndarray, centre, semi) -> np.ndarray:
    """Approximate depth (mm, positive inside) below the surface of an ellipsoid."""
    r = np.sqrt(
        ((dx - centre[0]) / semi[0]) ** 2
        + ((dy - centre[1]) / semi[1]) ** 2
        + ((dz - centre[2]) / semi[2]) ** 2
    )
    return (1.0 - r) * min(semi)


def _crop_slices(axis_coords, centre, half) -> tuple[slice, ...]:
    out = []
    for c, m, h in zip(axis_coords, centre, half, strict=True):
        idx = np.flatnonzero(np.abs(c - m) <= h)
        if idx.size == 0:
            out.append(slice(0, 0))
        else:
            out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(out)


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Frame:
    """The head's box on the scanner's grid: the grid's slices and, broadcastable in
    (z, y, x), the head-frame coordinates (mm) of its voxels."""

    crop: tuple[slice, ...]
    coords: tuple[np.ndarray, np.ndarray, np.ndarray]  # z, y, x (1D)
    dz: np.ndarray
    dy: np.ndarray
    dx: np.ndarray
    half: tuple[float, float, float]  # z, y, x


def _head_frame(sp: SubjectParams, grid: dict, shift: np.ndarray) -> _Frame:
    axis = _axis_coords(grid)  # z, y, x
    head = np.asarray(_CENTRE) + np.asarray(sp.offset) + shift  # x, y, z
    ax, ay, az = sp.semi_axes
    half = (az * 1.1 + 3.0, ay * 1.1 + 3.0, ax * 1.1 + 3.0)  # z, y, x
    crop = _crop_slices(axis, head[::-1], half)
    cz, cy, cx = (a[s] - h for a, s, h in zip(axis, crop, head[::-1], strict=True))
    return _Frame(crop, (cz, cy, cx), cz[:, None, None], cy[None, :, None], cx[None, None, :], half)


def _brain(sp: SubjectParams, frng: np.random.Generator, fr: _Frame) -> dict[str, np.ndarray]:
    """Depth below the brain's surface, and the partial-volume maps of brain, cortex (gm)
    and sulcal CSF: a perturbed ellipsoid, flatter below, narrower in front (-y is
    anterior)."""
    ax, ay, az = sp.semi_axes
    dz, dy, dx = fr.dz, fr.dy, fr.dx
    ax_eff = ax * (1.0 - 0.06 * np.clip(-dy / ay, 0.0, 1.0))
    az_eff = np.where(dz < 0, 0.85 * az, az)
    r = np.sqrt((dx / ax_eff) ** 2 + (dy / ay) ** 2 + (dz / az_eff) ** 2).astype(np.float32)
    shape = np.clip(_smooth_field(frng, fr.coords, fr.half, 20.0), -2.5, 2.5)
    mean_r = (ax + ay + az) / 3.0
    depth = (1.0 - r + 0.03 * shape) * np.float32(mean_r)  # mm below the brain surface
    del r, shape
    # cortex and sulci
    thick = _smooth_field(frng, fr.coords, fr.half, 12.0)
    sulcal = np.abs(_smooth_field(frng, fr.coords, fr.half, 4.0))
    sulcus_depth = 16.0 + 5.0 * thick
    gm = np.maximum(
        _ramp(4.0 + 1.0 * thick - depth),
        np.clip((0.9 - sulcal) / 0.15, 0.0, 1.0) * _ramp(sulcus_depth + 2.0 - depth),
    )
    csf = np.maximum(
        _ramp(1.0 - depth), np.clip(1.0 - sulcal / 0.15, 0.0, 1.0) * _ramp(sulcus_depth - depth)
    )
    return {"depth": depth, "brain": _ramp(depth), "gm": gm, "csf": csf}


def _deep_structures(sp: SubjectParams, fr: _Frame, like: np.ndarray):
    """Deep grey matter and lateral ventricles (which grow with ``ventricle_scale``)."""
    k = min(sp.semi_axes) / 57.0
    vs = sp.ventricle_scale
    dgm = np.zeros_like(like)
    vent = np.zeros_like(like)
    for side in (-1.0, 1.0):
        deep = _ellipsoid_depth(
            fr.dz, fr.dy, fr.dx, (side * 21 * k, 2 * k, 2 * k), (9 * k, 17 * k, 11 * k)
        )
        dgm = np.maximum(dgm, _ramp(deep))
        horn = _ellipsoid_depth(
            fr.dz,
            fr.dy,
            fr.dx,
            (side * (5.0 * vs + 1.0) * k, -4 * k, 10 * k),
            (5 * vs * k, 30 * k, 9 * vs * k),
        )
        vent = np.maximum(vent, _ramp(horn))
    return dgm, vent


def _tumour(sp: SubjectParams, trng, fr: _Frame, growth: float, vent, like: np.ndarray):
    """Edema, core and necrosis maps, drawn in the tumour's own frame (scaled by the
    session's growth). Edema spreads in the parenchyma, not into the ventricles; the core
    may invade them. The maps are of ``like``'s shape and type."""
    edema = np.zeros_like(like)
    core = np.zeros_like(like)
    necrosis = np.zeros_like(like)
    t_half = (1.65 * sp.r_edema + 3.0,) * 3
    tc = np.asarray(sp.tumour_centre)[::-1]  # z, y, x
    tcrop = _crop_slices(fr.coords, tc, tuple(growth * h for h in t_half))
    tq = tuple((c[s] - m) / growth for c, s, m in zip(fr.coords, tcrop, tc, strict=True))
    sx, sy, sz = sp.tumour_stretch
    rt = np.sqrt(
        (tq[2][None, None, :] / sx) ** 2
        + (tq[1][None, :, None] / sy) ** 2
        + (tq[0][:, None, None] / sz) ** 2
    ).astype(np.float32)
    f_ed = np.clip(_smooth_field(trng, tq, t_half, 7.0), -2.0, 2.0)
    f_core = np.clip(_smooth_field(trng, tq, t_half, 5.0), -2.0, 2.0)
    f_nec = np.clip(_smooth_field(trng, tq, t_half, 4.0), -2.0, 2.0)
    r_core = rt + 0.15 * sp.r_core * f_core
    core_t = _ramp(sp.r_core - r_core)
    edema[tcrop] = np.maximum(
        np.minimum(_ramp(sp.r_edema - (rt + 0.2 * sp.r_edema * f_ed)), 1.0 - vent[tcrop]), core_t
    )
    core[tcrop] = core_t
    if sp.enhancing:
        necrosis[tcrop] = np.minimum(
            _ramp(sp.r_necrosis - (r_core + 0.2 * sp.r_necrosis * f_nec)), core_t
        )
    return edema, core, necrosis


def _label(edema, core, necrosis, inside: np.ndarray, enhancing: bool) -> np.ndarray:
    """The label in BraTS 2017 values."""
    label = np.zeros(inside.shape, dtype=np.uint8)
    label[edema >= 0.5] = 2
    label[core >= 0.5] = 4 if enhancing else 1
    label[necrosis >= 0.5] = 1
    label[~inside] = 0
    return label


def _tissue_weights(layers: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Weight of each tissue of :data:`_TISSUES` at the brain's voxels ``idx``: every layer
    (gm, deep gm, csf, edema, core, necrosis) covers those painted before it."""
    weights = np.empty((len(_TISSUES), idx.size), dtype=np.float32)
    rest = np.ones(idx.size, dtype=np.float32)
    for t in range(len(_TISSUES) - 1, 0, -1):
        frac = layers[t - 1].ravel()[idx]
        weights[t] = frac * rest
        rest *= 1.0 - frac
    weights[0] = rest
    return weights


@dataclass(frozen=True)
class _Brain:
    """The brain's voxels (flat indices into the head box) and what every modality's
    intensities are made of there."""

    idx: np.ndarray
    weights: np.ndarray  # tissues x voxels
    texture: np.ndarray
    pv: np.ndarray  # partial-volume brain fraction
    edge: np.ndarray  # the outermost shell of brain voxels (partial volume)
    shape: tuple[int, ...]  # of the head box


def _modality(
    mod: str, case: str, seed: int, sp: SubjectParams, sc: ScannerParams, fr, b: _Brain, common
) -> np.ndarray:
    """One modality's int16 intensities in the head box: tissue means times texture,
    partial volume, bias field (``common``: the log-bias shared by the modalities, at the
    brain's voxels) and scanner scale, with Rician noise."""
    f32 = np.float32
    mrng = _rng(seed, f"case-{mod}", case)  # one modality does not depend on the others
    mu = [c * g for c, g in zip(_INTENSITY[mod], sp.tissue_gain[mod], strict=True)]
    if not sp.enhancing:
        mu[5] = mu[7]  # non-enhancing core
    mu = np.asarray(mu[:7], dtype=f32)
    own = _smooth_field(mrng, fr.coords, fr.half, 50.0).ravel()[b.idx]
    bias = np.exp(sc.bias_amplitude * (common + 0.4 * own))
    clean = (mu @ b.weights) * b.texture * b.pv * bias * f32(sc.scale[mod])
    sigma = f32(sc.noise * mu[0] * sc.scale[mod])
    n1 = mrng.standard_normal(b.idx.size, dtype=f32)
    n2 = mrng.standard_normal(b.idx.size, dtype=f32)
    noisy = np.sqrt((clean + sigma * n1) ** 2 + (sigma * n2) ** 2)
    # like real skull-stripped scans: a few small negative values at the brain's edge
    ring = b.edge & (mrng.random(b.idx.size, dtype=f32) < 0.03)
    noisy[ring] = -mrng.uniform(1.0, 3.0, int(ring.sum())).astype(f32) * sigma
    buf = np.zeros(b.shape, dtype=np.int16)
    buf.ravel()[b.idx] = np.clip(np.rint(noisy), -1000, np.iinfo(np.int16).max).astype(np.int16)
    return buf


def _anatomy(sp: SubjectParams, seed: int, subject: str, fr: _Frame, growth: float):
    """Label (BraTS 2017 values) and the brain's tissue make-up in the head box."""
    frng = _rng(seed, "subject", subject, stream=1)  # anatomy fields
    tissue = _brain(sp, frng, fr)
    inside = tissue["depth"] >= 0.0
    dgm, vent = _deep_structures(sp, fr, tissue["depth"])
    csf = np.maximum(tissue["csf"], vent)
    trng = _rng(seed, "subject", subject, stream=2)  # tumour shape fields
    edema, core, necrosis = _tumour(sp, trng, fr, growth, vent, tissue["depth"])
    label = _label(edema, core, necrosis, inside, sp.enhancing)
    idx = np.flatnonzero(inside)
    weights = _tissue_weights([tissue["gm"], dgm, csf, edema, core, necrosis], idx)
    tumour_frac = edema.ravel()[idx]
    pv = tissue["brain"].ravel()[idx]
    # texture (subject) and tumour heterogeneity
    texture = 1.0 + 0.04 * _smooth_field(frng, fr.coords, fr.half, 3.0).ravel()[idx]
    texture += 0.10 * tumour_frac * _smooth_field(frng, fr.coords, fr.half, 5.0).ravel()[idx]
    return label, _Brain(idx, weights, texture, pv, pv < 1.0, label.shape)


def _simulate(
    case: str,
    subject: str,
    scanner: str,
    session: int,
    seed: int,
    modalities: tuple[str, ...],
    grid: dict,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Images (int16) and label (uint8, BraTS 2017 values), arrays in (z, y, x) order."""
    sp = subject_params(seed, subject)
    sc = scanner_params(seed, scanner)
    case_rng = _rng(seed, "case", case)
    shift = case_rng.uniform(-2.0, 2.0, 3) if session > 1 else np.zeros(3)
    growth = float(case_rng.uniform(0.85, 1.15)) if session > 1 else 1.0
    fr = _head_frame(sp, grid, shift)
    label, brain = _anatomy(sp, seed, subject, fr, growth)
    # scanner: bias field (coil gradient per scanner, pattern per case), scale, noise
    v = np.asarray(sc.bias_gradient)
    gradient = ((v[0] * fr.dx + v[1] * fr.dy + v[2] * fr.dz) / 80.0).astype(np.float32)
    common = 0.6 * _smooth_field(case_rng, fr.coords, fr.half, 50.0) + gradient
    common = common.ravel()[brain.idx]
    size_zyx = tuple(int(n) for n in grid["size"][::-1])
    images = {}
    for mod in modalities:
        images[mod] = np.zeros(size_zyx, dtype=np.int16)
        images[mod][fr.crop] = _modality(mod, case, seed, sp, sc, fr, brain, common)
    full_label = np.zeros(size_zyx, dtype=np.uint8)
    full_label[fr.crop] = label
    return images, full_label


# --------------------------------------------------------------------------- writing


def _image(array: np.ndarray, grid: dict) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(v) for v in grid["spacing"]))
    img.SetOrigin(tuple(float(v) for v in grid["origin"]))
    img.SetDirection(tuple(float(v) for v in grid["direction"]))
    return img


def case_paths(
    case: str, outdir: str | os.PathLike, labelled: bool, modalities=BRATS_MODALITIES
) -> dict[str, str]:
    """The files of a demo case: ``<outdir>/<case>/<case>_<mod>.nii.gz`` (and ``seg``)."""
    folder = Path(outdir) / case
    names = [*modalities, "seg"] if labelled else list(modalities)
    return {m: str(folder / f"{case}_{m}.nii.gz") for m in names}


def _check_modalities(modalities, case=None) -> tuple[str, ...]:
    modalities = tuple(modalities)
    bad = [m for m in modalities if m not in BRATS_MODALITIES]
    if bad or not modalities:
        raise InputError(
            f"the demo dataset cannot generate modalities {bad or '[]'}; "
            f"it has {list(BRATS_MODALITIES)} (set config `modalities` to some of them)",
            case,
        )
    return modalities


def write_case(
    case: str,
    subject: str,
    scanner: str,
    session: int,
    labelled: bool,
    outdir: str,
    seed: int,
    modalities=BRATS_MODALITIES,
) -> dict[str, str]:
    """Generate one demo case and write it as compressed NIfTI; return its paths by
    modality (and ``seg`` when labelled). Deterministic from ``seed`` and the IDs."""
    modalities = _check_modalities(modalities, case)
    if not SAFE_ID.match(case):
        raise InputError("case ID has unsafe characters", case)
    if int(session) < 1:
        raise InputError(f"session must be 1 or more, got {session}", case)
    grid = scanner_grid(scanner)
    images, label = _simulate(case, subject, scanner, int(session), int(seed), modalities, grid)
    paths = case_paths(case, outdir, labelled, modalities)
    for mod in modalities:
        with atomic_path(paths[mod]) as tmp:
            sitk.WriteImage(_image(images[mod], grid), str(tmp), True)
    if labelled:
        with atomic_path(paths["seg"]) as tmp:
            sitk.WriteImage(_image(label, grid), str(tmp), True)
    return paths
