"""Facial features as pure functions of MediaPipe FaceMesh landmarks (no MediaPipe needed to test them).

**mediapipe** (default, ``D_v = 55``). MediaPipe FaceMesh (Kartynnik et al., 2019, "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs"; iris refinement: Ablavatski et al., 2020) gives 478 landmarks
with ``refine_landmarks=True``. Its normalised output is turned into pixel-scaled 3-D points
``P = (x * w, y * h, z * w)`` of the frame FaceMesh saw (``w, h`` its width and height; MediaPipe's ``z`` is
relative depth in roughly ``x``'s scale, larger = farther from the camera), and every feature below is a pure
function of ``P`` (:func:`face_features`), so it is testable on hand-made landmark arrays. Landmark numbers
are MediaPipe's; "right"/"left" (``_r``/``_l``) are the *subject's*: the right eye (33/133, iris 468) shows on
the image's left in an unmirrored frontal view. Mirroring the image swaps which physical eye each ``_r``/``_l``
feature measures.

Shared quantities: eye centres ``e_r = (P33 + P133) / 2`` and ``e_l = (P362 + P263) / 2``; inter-ocular distance
``iod = |e_l - e_r|`` in 3-D (so it hardly shrinks when the head turns); ``|.|_2`` is a distance in the image
plane (x, y only).

============== ========================================================================================
feature        definition (units)
============== ========================================================================================
head_yaw       face frame: ``x^ = unit(e_l - e_r)``, ``y^ =`` unit part of ``P152 - P10`` (forehead to chin)
head_pitch     orthogonal to ``x^``, ``z^ = x^ x y^``; ``R = [x^ y^ z^]`` decomposed as ``Rz Ry Rx`` in camera
head_roll      axes (x right, y down, z away). Degrees. yaw ``= asin(x^_z)``, > 0 when the nose points to the
               image's right (subject turning to their own left); pitch ``= -atan2(y^_z, z^_z)`` minus the
               0.7 deg that MediaPipe's canonical face model gives, > 0 when the chin rises (looking up);
               roll ``= -atan2(x^_y, x^_x)``, > 0 when the face is turned counter-clockwise as seen in the
               image (the image-right eye higher), the sense of ``skimage.transform.rotate(+angle)``.
eye_open_r/_l  eye aspect ratio (Soukupova & Cech, 2016): ``(|p2-p6|_2 + |p3-p5|_2) / (2 |p1-p4|_2)``, right
               eye p1..p6 = 33,160,158,133,153,144, left 362,385,387,263,373,380. About 0.25-0.35 open, < 0.1
               closed. Unitless.
mouth_open     mean inner-lip gap of the pairs 13-14, 82-87, 312-317 over mouth width ``|P61 - P291|_2``
               (image plane). 0 closed, ~0.3-0.6 wide open. Unitless.
mouth_width    ``|P61 - P291|`` (3-D) / iod: mouth-corner distance, rises in a smile. Unitless.
brow_raise_r/_l  3-D distance from the brow middle (mean of 63,105,66 / 293,334,296) to the eye centre, / iod.
gaze_h         iris centre (468 / 473) projected on the eye's corner axis, as ``2 t - 1`` with ``t = 0`` at the
               image-left corner and 1 at the image-right one, mean of both eyes: -1..1, > 0 when the irises sit
               toward the image's right. Image plane.
gaze_v         signed distance of the iris centre from the corner line, positive toward the chin, / corner
               distance, mean of both eyes (> 0 looking down). Image plane, unitless.
face_x, face_y centre of the 478 landmarks' bounding box, as a fraction of frame width / height (0..1).
face_size      that box's diagonal / the frame's diagonal (0..1).
lm_<name>_x/_y 20 key landmarks (:data:`KEY_LANDMARKS`: brows, eye corners, nose, mouth, jaw) in a face-centred
               frame: subtract the 2-D eye midpoint ``(e_r + e_l) / 2``, rotate by ``-roll`` so the eye line is
               horizontal (x toward the subject's left eye, y toward the chin), divide by iod. Unitless.
face_present   1.0
============== ========================================================================================
"""

from __future__ import annotations

import math

import numpy as np

# (name, MediaPipe index); subject's right/left.
KEY_LANDMARKS: tuple[tuple[str, int], ...] = (
    ("r_brow_outer", 70), ("r_brow_mid", 105), ("r_brow_inner", 107),
    ("l_brow_inner", 336), ("l_brow_mid", 334), ("l_brow_outer", 300),
    ("r_eye_outer", 33), ("r_eye_inner", 133), ("l_eye_inner", 362), ("l_eye_outer", 263),
    ("nose_tip", 1), ("r_nostril", 98), ("l_nostril", 327),
    ("mouth_r", 61), ("mouth_l", 291), ("lip_top", 0), ("lip_bottom", 17),
    ("r_jaw", 172), ("chin", 152), ("l_jaw", 397),
)
_EYE_R = (33, 160, 158, 133, 153, 144)  # p1..p6 of the eye aspect ratio; p1 outer corner, p4 inner corner
_EYE_L = (362, 385, 387, 263, 373, 380)  # p1 inner corner (image left), p4 outer corner
_BROW_R, _BROW_L = (63, 105, 66), (293, 334, 296)
_INNER_LIPS = ((13, 14), (82, 87), (312, 317))
_IRIS_R, _IRIS_L = 468, 473
_KEY_IDX = [i for _, i in KEY_LANDMARKS]
_FOREHEAD, _CHIN = 10, 152
_MOUTH_R, _MOUTH_L = 61, 291
# canonical_face_model.obj: vertex 10 (0, 8.262, 4.482), vertex 152 (0, -9.403, 4.264) -> the forehead-chin axis
# leans 0.7 deg out of the image plane for a frontal face; subtracting it makes pitch 0 for that model.
_PITCH_OFFSET_DEG = -math.degrees(math.atan2(4.481535 - 4.264492, 8.261778 + 9.403378))

MP_FEATURES: tuple[str, ...] = (
    "head_yaw", "head_pitch", "head_roll", "eye_open_r", "eye_open_l", "mouth_open", "mouth_width",
    "brow_raise_r", "brow_raise_l", "gaze_h", "gaze_v", "face_x", "face_y", "face_size",
    *(f"lm_{name}_{axis}" for name, _ in KEY_LANDMARKS for axis in "xy"),
    "face_present",
)

# ----------------------------------------------------------------------------------------- pure geometry
# Plain-float arithmetic on the few landmarks each feature needs: numpy's per-call overhead on 2- and 3-vectors
# would cost ~0.5 ms per frame, a tenth of the FaceMesh time.


def _d2(a, b) -> float:
    """Image-plane distance of two points (x, y, ...)."""
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _d3(a, b) -> float:
    return math.sqrt((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2)


def _mid(*pts) -> list[float]:
    return [sum(c) / len(pts) for c in zip(*pts, strict=True)]


def eye_centres(P: np.ndarray) -> tuple[list[float], list[float]]:
    """Midpoints (x, y, z) of the right (33, 133) and left (362, 263) eye corners of ``P`` (478, 3)."""
    r_out, r_in, l_in, l_out = P[[33, 133, 362, 263]].tolist()
    return _mid(r_out, r_in), _mid(l_in, l_out)


def inter_ocular(P: np.ndarray) -> float:
    """3-D distance between the eye centres, in P's pixels (at least 1e-9)."""
    return max(_d3(*eye_centres(P)), 1e-9)


def head_pose(P: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from pixel-scaled landmarks ``P`` (478, 3); signs as in the module doc."""
    e_r, e_l = eye_centres(P)
    top, chin = P[[_FOREHEAD, _CHIN]].tolist()
    n = max(_d3(e_l, e_r), 1e-9)
    x = [(b - a) / n for a, b in zip(e_r, e_l, strict=True)]
    v = [b - a for a, b in zip(top, chin, strict=True)]
    vx = sum(p * q for p, q in zip(v, x, strict=True))
    y = [p - vx * q for p, q in zip(v, x, strict=True)]  # Gram-Schmidt: the chin axis is not quite normal to x
    ny = max(math.sqrt(sum(p * p for p in y)), 1e-9)
    y = [p / ny for p in y]
    z2 = x[0] * y[1] - x[1] * y[0]  # z = x cross y; only its depth component enters the angles
    yaw = math.degrees(math.asin(min(1.0, max(-1.0, x[2]))))
    pitch = -math.degrees(math.atan2(y[2], z2)) - _PITCH_OFFSET_DEG
    roll = -math.degrees(math.atan2(x[1], x[0]))
    return yaw, pitch, roll


def eye_aspect_ratio(P: np.ndarray, idx: tuple[int, ...]) -> float:
    """Eye aspect ratio of the six landmarks ``idx`` = p1..p6 in the image plane."""
    p1, p2, p3, p4, p5, p6 = P[list(idx)].tolist()
    return (_d2(p2, p6) + _d2(p3, p5)) / max(2.0 * _d2(p1, p4), 1e-9)


def mouth_open_ratio(P: np.ndarray) -> float:
    """Mean inner-lip gap (13-14, 82-87, 312-317) over mouth-corner distance (61-291), image plane."""
    q = P[[i for pair in _INNER_LIPS for i in pair] + [_MOUTH_R, _MOUTH_L]].tolist()
    gaps = sum(_d2(q[k], q[k + 1]) for k in range(0, 2 * len(_INNER_LIPS), 2)) / len(_INNER_LIPS)
    return gaps / max(_d2(q[-2], q[-1]), 1e-9)


def iris_offset(P: np.ndarray, iris: int, corner_a: int, corner_b: int) -> tuple[float, float]:
    """Iris centre relative to the eye corners ``corner_a`` (image-left) and ``corner_b``, image plane:
    (``2 t - 1`` along the corner axis, signed perpendicular offset toward the chin / corner distance)."""
    (ax, ay, _), (bx, by, _), (cx, cy, _) = P[[corner_a, corner_b, iris]].tolist()
    ux, uy, dx, dy = bx - ax, by - ay, cx - ax, cy - ay
    n2 = max(ux * ux + uy * uy, 1e-9)
    # (-uy, ux) is the axis turned +90 deg in image coordinates (y down): it points toward the chin
    return 2.0 * (dx * ux + dy * uy) / n2 - 1.0, (dy * ux - dx * uy) / n2


def face_geometry(P: np.ndarray, roll_deg: float, iod: float) -> np.ndarray:
    """(2 K,) x, y of :data:`KEY_LANDMARKS` in the face-centred frame (module doc), interleaved x0, y0, x1, ..."""
    e_r, e_l = eye_centres(P)
    pts = P[_KEY_IDX, :2] - ((e_r[0] + e_l[0]) / 2, (e_r[1] + e_l[1]) / 2)  # (K, 2)
    # the eye line sits at image angle -roll (y down); rotating by +roll in that frame levels it
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    return (pts @ np.array([[c, s], [-s, c]]) / max(iod, 1e-9)).reshape(-1)  # (K, 2) -> (2 K,)


def face_features(P: np.ndarray, width: int, height: int) -> np.ndarray:
    """All mediapipe-backend features but ``face_present``: (D_v - 1,) float64 in :data:`MP_FEATURES` order.

    Args:
        P: (478, 3) landmarks in pixels of a ``width`` x ``height`` frame, z in x's pixel scale.
    """
    e_r, e_l = eye_centres(P)
    iod = inter_ocular(P)
    yaw, pitch, roll = head_pose(P)
    gh_r, gv_r = iris_offset(P, _IRIS_R, 33, 133)
    gh_l, gv_l = iris_offset(P, _IRIS_L, 362, 263)
    m_r, m_l = P[[_MOUTH_R, _MOUTH_L]].tolist()
    brow_r, brow_l = _mid(*P[list(_BROW_R)].tolist()), _mid(*P[list(_BROW_L)].tolist())
    (x0, y0), (x1, y1) = P[:, :2].min(0).tolist(), P[:, :2].max(0).tolist()
    scalars = [
        yaw, pitch, roll,
        eye_aspect_ratio(P, _EYE_R), eye_aspect_ratio(P, _EYE_L),
        mouth_open_ratio(P),
        _d3(m_r, m_l) / iod,
        _d3(brow_r, e_r) / iod, _d3(brow_l, e_l) / iod,
        (gh_r + gh_l) / 2, (gv_r + gv_l) / 2,
        (x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
        math.hypot(x1 - x0, y1 - y0) / math.hypot(width, height),
    ]
    return np.concatenate([scalars, face_geometry(P, roll, iod)])
