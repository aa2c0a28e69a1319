"""Per-frame face features (emodistill.extract.vision): pure landmark geometry on hand-made arrays, then both
backends on skimage's astronaut photograph (Eileen Collins) with hand-measured ground truth."""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np
import pytest

from emodistill.extract import face_geometry, vision
from emodistill.extract.errors import MissingExtraError
from emodistill.extract.vision import FaceFeatureExtractor, VisionConfig

# Hand-read from data.astronaut() at 10x zoom (x = column, y = row): eye corners of the subject's right eye
# (image left) and left eye. The whole face spans rows ~60-170, columns ~170-280; its centre is ~(225, 115).
EYE_R_OUTER, EYE_R_INNER = (192.5, 99.5), (213.5, 101.5)
EYE_L_INNER, EYE_L_OUTER = (235.5, 102.0), (258.5, 103.0)
FACE_CENTRE = (225.0, 115.0)

# MediaPipe canonical_face_model.obj vertices (cm; x to the image's right, y up, z toward the viewer)
CANONICAL = {
    1: (0.0, -1.126865, 7.475604),  # nose tip
    10: (0.0, 8.261778, 4.481535),  # forehead
    33: (-4.445859, 2.663991, 3.173422),
    133: (-1.856432, 2.585245, 3.757904),
    152: (0.0, -9.403378, 4.264492),  # chin
    263: (4.445859, 2.663991, 3.173422),
    362: (1.856432, 2.585245, 3.757904),
}

NAMES = face_geometry.MP_FEATURES
COL = {n: i for i, n in enumerate(NAMES)}


def _P(points: dict[int, tuple[float, ...]]) -> np.ndarray:
    """(478, 3) landmark array, zero except ``points`` (2-D points get z = 0)."""
    P = np.zeros((478, 3))
    for i, p in points.items():
        P[i, : len(p)] = p
    return P


# ------------------------------------------------------------------------------ pure geometry (no mediapipe)


def _rot(axis: str, deg: float) -> np.ndarray:
    """Right-handed rotation in camera axes (x right, y down, z away from the camera)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _canonical_face(R: np.ndarray) -> np.ndarray:
    """Canonical vertices in image axes (y down, z away), 40 px per cm, rotated by R about the face, shifted."""
    return _P({i: 40 * R @ np.array([x, -y, -z]) + (300, 200, 0) for i, (x, y, z) in CANONICAL.items()})


def test_head_pose_recovers_known_rotations():
    assert face_geometry.head_pose(_canonical_face(np.eye(3))) == pytest.approx((0, 0, 0), abs=1e-6)
    yaw, pitch, roll = 20.0, 12.0, -8.0
    # the sign conventions, pinned by where the nose tip / image-right eye go (not by the code under test):
    turned = _canonical_face(_rot("y", -yaw))
    assert turned[1, 0] > _canonical_face(np.eye(3))[1, 0] + 5  # nose moved to the image's right
    assert face_geometry.head_pose(turned)[0] == pytest.approx(yaw, abs=1e-6)
    raised = _canonical_face(_rot("x", -pitch))
    assert raised[1, 1] < _canonical_face(np.eye(3))[1, 1] - 5  # nose moved up: chin raised
    assert face_geometry.head_pose(raised)[1] == pytest.approx(pitch, abs=1e-6)
    tilted = _canonical_face(_rot("z", -roll))
    assert tilted[263, 1] > tilted[33, 1]  # roll < 0: image-right eye lower, i.e. turned clockwise on screen
    assert face_geometry.head_pose(tilted)[2] == pytest.approx(roll, abs=1e-6)
    combined = _canonical_face(_rot("z", -roll) @ _rot("y", -yaw) @ _rot("x", -pitch))
    assert face_geometry.head_pose(combined) == pytest.approx((yaw, pitch, roll), abs=1e-6)
    # a chin displaced along the eye line (an asymmetric jaw) does not change the face frame
    eye_line = combined[263] + combined[362] - combined[33] - combined[133]
    combined[152] += 0.3 * eye_line
    assert face_geometry.head_pose(combined) == pytest.approx((yaw, pitch, roll), abs=1e-6)


def test_eye_aspect_ratio_and_mouth_open_on_hand_made_landmarks():
    # corners 10 px apart, lids 4 px apart at both lid pairs -> (4 + 4) / (2 * 10)
    eye = _P({33: (0, 0), 160: (3, -2), 158: (7, -2), 133: (10, 0), 153: (7, 2), 144: (3, 2)})
    assert face_geometry.eye_aspect_ratio(eye, (33, 160, 158, 133, 153, 144)) == pytest.approx(0.4)
    closed = _P({33: (0, 0), 160: (3, -0.5), 158: (7, -0.5), 133: (10, 0), 153: (7, 0.5), 144: (3, 0.5)})
    assert face_geometry.eye_aspect_ratio(closed, (33, 160, 158, 133, 153, 144)) == pytest.approx(0.1)
    # mouth 40 px wide, inner-lip gaps 4, 6, 8 -> mean 6 -> 0.15
    mouth = _P({61: (0, 0), 291: (40, 0), 82: (12, -2), 87: (12, 2), 13: (20, -3), 14: (20, 3),
                312: (28, -4), 317: (28, 4)})
    assert face_geometry.mouth_open_ratio(mouth) == pytest.approx(0.15)


def test_iris_offset_on_hand_made_landmarks():
    # corners at x = 0 and 20; iris 3/4 of the way to the image-right corner, 2 px (0.1 eye width) below
    P = _P({33: (0, 0), 133: (20, 0), 468: (15, 2)})
    assert face_geometry.iris_offset(P, 468, 33, 133) == pytest.approx((0.5, 0.1))
    P = _P({33: (0, 0), 133: (20, 0), 468: (10, -1)})
    assert face_geometry.iris_offset(P, 468, 33, 133) == pytest.approx((0.0, -0.05))


def test_face_geometry_is_face_centred_and_level():
    # eyes centred at (100, 100) and (140, 100): iod 40, origin (120, 100); chin 40 px below the origin
    P = _P({33: (90, 100), 133: (110, 100), 362: (130, 100), 263: (150, 100), 152: (120, 140), 1: (120, 124)})
    geo = face_geometry.face_geometry(P, 0.0, 40.0).reshape(-1, 2)  # (K, 2)
    names = [n for n, _ in face_geometry.KEY_LANDMARKS]
    assert geo[names.index("chin")] == pytest.approx((0.0, 1.0))
    assert geo[names.index("nose_tip")] == pytest.approx((0.0, 0.6))
    assert geo[names.index("r_eye_outer")] == pytest.approx((-0.75, 0.0))


def test_face_features_invariant_to_scale_and_in_plane_rotation():
    rng = np.random.default_rng(0)
    P = _canonical_face(_rot("y", -10))
    P[P == 0] = rng.normal(300, 40, size=(P == 0).sum())  # fill the rest with plausible points
    base = face_geometry.face_features(P, 640, 480)
    assert base.shape == (len(NAMES) - 1,)
    assert face_geometry.face_features(P * 2.5, 1600, 1200) == pytest.approx(base, abs=1e-9)  # whole frame rescaled
    # rotate the landmarks 25 deg counter-clockwise on screen about (320, 240): roll +25, the rest unchanged
    a = math.radians(-25)  # image y points down, so a negative angle in (x, y) is counter-clockwise on screen
    R2 = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    Q = P.copy()
    Q[:, :2] = (P[:, :2] - (320, 240)) @ R2.T + (320, 240)
    turned = face_geometry.face_features(Q, 640, 480)
    assert turned[COL["head_roll"]] == pytest.approx(base[COL["head_roll"]] + 25, abs=1e-6)
    rotation_free = [i for i, n in enumerate(NAMES[:-1]) if n.startswith(("lm_", "eye_", "mouth_", "brow_", "gaze"))]
    assert turned[rotation_free] == pytest.approx(base[rotation_free], abs=1e-9)


def test_config_round_trip_and_validation():
    cfg = VisionConfig(backend="haar", max_side=360)
    d = cfg.to_dict()
    assert d == dataclasses.asdict(cfg) and VisionConfig(**d) == cfg
    assert all(isinstance(v, str | int | float | bool) for v in d.values())
    with pytest.raises(ValueError, match="backend"):
        VisionConfig(backend="dlib")
    with pytest.raises(ValueError, match="max_side"):
        VisionConfig(max_side=0)


def test_opencv_without_cascades_names_the_fix():
    cv5 = types.SimpleNamespace(__version__="5.0.0")  # OpenCV 5: no cv2.data, no CascadeClassifier
    with pytest.raises(MissingExtraError, match="install OpenCV 4"):
        vision._require_cascades(cv5, "haar backend")


# ---------------------------------------------------------------------------------------- images and media


def _u8(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()  # (512, 512, 3) uint8


@pytest.fixture(scope="module")
def mesh():
    pytest.importorskip("mediapipe")
    with FaceFeatureExtractor(VisionConfig()) as ex:
        yield ex


def one(ex: FaceFeatureExtractor, img: np.ndarray) -> np.ndarray:
    feats, present = ex(img[None])
    assert present[0], "no face found"
    return feats[0]


def test_astronaut_frames_have_faces(mesh):
    from media import face_frames

    feats, present = mesh(face_frames(8, 256))
    assert mesh.feature_names == list(NAMES) and mesh.feature_names[-1] == "face_present"
    assert feats.shape == (8, len(NAMES)) and feats.dtype == np.float32 and present.dtype == bool
    assert present.all() and np.isfinite(feats).all()
    assert (feats[:, -1] == 1.0).all()
    # open eyes, closed-lip smile, face in the upper middle of the crop
    assert ((feats[:, COL["eye_open_r"]] > 0.2) & (feats[:, COL["eye_open_l"]] > 0.2)).all()
    assert (np.abs(feats[:, COL["head_yaw"]]) < 15).all()


def test_blank_frames_are_all_zero(mesh):
    from media import blank_frames

    feats, present = mesh(blank_frames(6, 256))
    assert not present.any() and feats.shape == (6, len(NAMES)) and not feats.any()
    feats, present = mesh(np.zeros((0, 64, 64, 3), np.uint8))
    assert feats.shape == (0, len(NAMES)) and present.shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        mesh(np.zeros((2, 64, 64, 3), np.float32))


def test_roll_follows_image_rotation(mesh, astronaut):
    transform = pytest.importorskip("skimage.transform")
    # hand-measured eye line: the image-right eye sits 2 px lower over 44 px -> roll about -2.6 deg
    (rx, ry), (lx, ly) = np.mean([EYE_R_OUTER, EYE_R_INNER], 0), np.mean([EYE_L_INNER, EYE_L_OUTER], 0)
    base = -math.degrees(math.atan2(ly - ry, lx - rx))
    assert one(mesh, astronaut)[COL["head_roll"]] == pytest.approx(base, abs=4)
    ccw = one(mesh, _u8(transform.rotate(astronaut, 15)))[COL["head_roll"]]  # counter-clockwise on screen
    cw = one(mesh, _u8(transform.rotate(astronaut, -15)))[COL["head_roll"]]
    assert ccw > 0 > cw
    assert ccw == pytest.approx(base + 15, abs=5) and cw == pytest.approx(base - 15, abs=5)


def _turn(img: np.ndarray, deg: float, cx: float = 224.0, radius: float = 120.0) -> np.ndarray:
    """Turn the face as if painted on a vertical cylinder (axis x = cx): deg > 0 moves the surface, and the
    nose, toward the image's right."""
    import cv2

    u = np.arange(img.shape[1], dtype=np.float32)
    inside = np.abs(u - cx) < radius
    phi = np.arcsin(np.clip((u - cx) / radius, -1, 1)) - math.radians(deg)  # surface angle seen at column u
    src = np.where(inside, cx + radius * np.sin(np.clip(phi, -np.pi / 2, np.pi / 2)), u).astype(np.float32)
    mapx = np.tile(src, (img.shape[0], 1))
    mapy = np.tile(np.arange(img.shape[0], dtype=np.float32)[:, None], (1, img.shape[1]))
    return cv2.remap(img, mapx, mapy, cv2.INTER_LINEAR)


def test_mirror_flips_yaw_and_swaps_eyes(mesh, astronaut):
    left, right = one(mesh, _turn(astronaut, -30)), one(mesh, _turn(astronaut, 30))
    assert left[COL["head_yaw"]] < -2 and right[COL["head_yaw"]] > 2
    mirrored = one(mesh, np.ascontiguousarray(_turn(astronaut, -30)[:, ::-1]))
    assert mirrored[COL["head_yaw"]] > 2
    assert mirrored[COL["head_roll"]] * left[COL["head_roll"]] < 0
    # cover the image-left eye (the subject's right one) with the skin below it: a wink
    wink = astronaut.copy()
    wink[93:110, 186:220] = astronaut[112:129, 186:220]
    f, m = one(mesh, wink), one(mesh, np.ascontiguousarray(wink[:, ::-1]))
    assert f[COL["eye_open_r"]] < 0.2 < f[COL["eye_open_l"]]
    assert m[COL["eye_open_l"]] < 0.2 < m[COL["eye_open_r"]]  # the mirror moves the shut eye to the other side
    assert m[COL["eye_open_l"]] == pytest.approx(f[COL["eye_open_r"]], abs=0.05)


def test_features_do_not_depend_on_image_scale(mesh, astronaut):
    transform = pytest.importorskip("skimage.transform")
    ref = one(mesh, astronaut)
    angles = [COL["head_yaw"], COL["head_pitch"], COL["head_roll"]]
    others = [i for i in range(len(NAMES)) if i not in angles]
    for s in (0.5, 1.5):  # 256 px, and 768 px which the extractor downscales to max_side = 480
        f = one(mesh, _u8(transform.rescale(astronaut, s, channel_axis=2, anti_aliasing=True)))
        assert f[angles] == pytest.approx(ref[angles], abs=3.0)
        assert f[others] == pytest.approx(ref[others], abs=0.04)
    assert ref[COL["face_x"]] == pytest.approx(FACE_CENTRE[0] / 512, abs=0.03)
    assert ref[COL["face_y"]] == pytest.approx(FACE_CENTRE[1] / 512, abs=0.05)


def test_deterministic_and_clean_after_cuts(mesh):
    from media import blank_frames, face_frames

    clip = face_frames(12, 256)
    clip = np.concatenate([clip[:6], np.ascontiguousarray(clip[6:, :, ::-1])])  # a mirrored shot after frame 5
    first = mesh(clip)
    mesh(blank_frames(3, 256))  # another clip in between must not leak state
    second = mesh(clip)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[1].all()
    # after the cut the features match a clip that starts with the mirrored shot
    alone, _ = mesh(clip[6:])
    assert first[0][6:] == pytest.approx(alone, abs=1e-4)


def test_face_that_jumps_is_found_on_the_same_frame(astronaut):
    pytest.importorskip("mediapipe")
    head = astronaut[30:210, 140:310]  # (180, 170)
    frames = np.full((2, 360, 480, 3), 128, np.uint8)
    frames[0, 90:270, 40:210], frames[1, 90:270, 160:330] = head, head  # 120 px jump, small background change
    with FaceFeatureExtractor(VisionConfig(haar_redetect=False)) as ex:
        feats, present = ex(frames)
        alone, _ = ex(frames[1:])
    assert present.all()  # the tracker loses the face at the jump; the static graph finds it on that frame
    assert feats[1] == pytest.approx(alone[0], abs=1e-4)


@pytest.mark.parametrize("size", [960, 480])
def test_small_face_needs_haar_redetect(astronaut, size):
    pytest.importorskip("mediapipe")
    transform = pytest.importorskip("skimage.transform")
    s = 0.6  # a ~66 px face in a 960 px frame (33 px after the downscale to max_side = 480)
    small = _u8(transform.rescale(astronaut, s, channel_axis=2, anti_aliasing=True))
    canvas = np.full((960, 960, 3), 128, np.uint8)
    canvas[400 : 400 + len(small), 300 : 300 + len(small)] = small
    if size != 960:  # as the decoder delivers it: already at max_side, so the crops have no extra pixels
        canvas = _u8(transform.resize(canvas, (size, size), anti_aliasing=True))
    frames = np.stack([canvas] * 4)
    with FaceFeatureExtractor(VisionConfig(haar_redetect=False)) as ex:
        assert not ex(frames)[1].any(), "FaceMesh alone now finds this face; make it smaller to test redetection"
    with FaceFeatureExtractor(VisionConfig(haar_redetect=True)) as ex:
        feats, present = ex(frames)
        assert np.array_equal(ex(frames)[0], feats)  # the static graph behind the crops keeps no state either
    assert present.all()
    expected = ((300 + FACE_CENTRE[0] * s) / 960, (400 + FACE_CENTRE[1] * s) / 960)
    assert feats[:, [COL["face_x"], COL["face_y"]]] == pytest.approx(np.tile(expected, (4, 1)), abs=0.02)
    with FaceFeatureExtractor(VisionConfig()) as ex:
        ref = one(ex, astronaut)
    lm = [i for i, n in enumerate(NAMES) if n.startswith("lm_")]
    assert feats[:, lm] == pytest.approx(np.tile(ref[lm], (4, 1)), abs=0.1)  # same face shape, found on a crop


def test_haar_backend_on_astronaut(astronaut):
    pytest.importorskip("cv2")
    from media import blank_frames

    with FaceFeatureExtractor(VisionConfig(backend="haar")) as ex:
        assert ex.feature_names == list(vision.HAAR_FEATURES) and ex.feature_names[-1] == "face_present"
        feats, present = ex(astronaut[None])
        blank, blank_present = ex(blank_frames(2, 256))
    assert present.all() and feats.shape == (1, 7) and feats[0, -1] == 1.0
    x, y, w, h = feats[0, :4] * 512
    assert 170 < x < 280 and 60 < y < 170  # box centre inside the face
    assert 60 < w < 140 and 60 < h < 140
    assert 0 <= feats[0, 4] <= 2 and feats[0, 5] in (0.0, 1.0)
    assert not blank_present.any() and not blank.any()
