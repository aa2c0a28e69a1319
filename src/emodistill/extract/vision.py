"""Per-frame facial features from RGB frames: the MMSA ``vision`` sequence ``(T_v, D_v)`` of one clip.

Two backends, chosen by :attr:`VisionConfig.backend`:

**mediapipe** (default, ``D_v = 55``): MediaPipe FaceMesh landmarks (478, iris refined) turned into
head pose, eye/mouth openness, brow raise, gaze, face position/size and 20 normalised key landmarks; every
definition, unit and sign is in :mod:`emodistill.extract.face_geometry`.

**haar** (``D_v = 7``; for machines without MediaPipe, e.g. numpy 2): OpenCV's Viola-Jones cascades. The
largest ``haarcascade_frontalface_default`` box gives ``face_x, face_y`` (box centre) and ``face_w, face_h``
as fractions of frame width / height; on the box resized to 96x96, ``eyes`` counts ``haarcascade_eye`` hits in
its upper 60 % (0, 1 or 2) and ``smile`` is 1.0 if ``haarcascade_smile`` fires in its lower half; then
``face_present``.
Faces from 24 px (in the frame downscaled to ``max_side``). The face is tracked: the next frame is searched
near the last box at a similar size; a full-frame search that finds nothing is not repeated for ``_HAAR_GAP``
frames.

**Frames without a face** (either backend): every feature is 0.0, ``face_present`` is 0.0 and ``present[t]`` is
False. Zeros never pass for data because ``face_present`` says so; the pipeline also keeps the mask.

**Tracking and fall-backs** (mediapipe backend). Frames go through a FaceMesh graph in tracking mode (landmarks
of frame t seed the face region of t+1: about 2 ms/frame cheaper than re-detecting every frame). A shot cut
(mean absolute difference of 16x16 thumbnails > ``_CUT_DIFF``) resets the tracker, which would otherwise fit
landmarks inside the old face's box. When the tracker loses a face it only re-detects on the next frame, so that
frame is re-run through a second, static FaceMesh graph.

With ``haar_redetect=True``, a frame still without a face is retried on crops of the frame as passed in (finer
than what FaceMesh saw if it was larger than ``max_side``): around the previous face, then around up to three
OpenCV Haar face boxes (largest first), each through the static graph; landmarks are mapped back to frame
coordinates. Haar runs on the downscaled frame and looks for faces from 24 px up to a fifth of its short side.
This matters: FaceMesh's short-range detector misses faces narrower than roughly an eighth of the frame
(skimage's astronaut pasted at full size into a 960x960 canvas is missed, and found via Haar). Once a face was
found on a crop, following frames try the crop around it first. After a frame where Haar found no usable face,
Haar is skipped for ``_HAAR_GAP`` frames, which bounds the cost on faceless clips (a small face that appears then
is picked up at most that many frames late).

**Determinism**: every call starts a fresh tracking run and fresh per-clip state; the static graph keeps no
state. The output depends only on the frames of that call, and identical frames give identical arrays.
"""


from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from emodistill.extract.errors import MissingExtraError, require
from emodistill.extract.face_geometry import MP_FEATURES, face_features
from emodistill.extract.logs import filtered_native_stderr, quiet_third_party_logs

HAAR_FEATURES: tuple[str, ...] = ("face_x", "face_y", "face_w", "face_h", "eyes", "smile", "face_present")

_CUT_DIFF = 30.0  # mean |difference| of 16x16 thumbnails (0-255) that counts as a shot cut; a 4 % pan gives about 25
_HAAR_GAP = 7  # frames skipped after a full-frame Haar search found nothing (20-150 ms at 480 px)
_HAAR_CROP = 2.0  # crop side / Haar box side (the box spans brows to mouth)
_TRACK_CROP = 1.5  # crop side / previous landmark box side


@dataclass
class VisionConfig:
    """How per-frame face features are computed; stored in checkpoints so new videos match training."""

    backend: str = "mediapipe"
    """Either "mediapipe" (FaceMesh, 478 landmarks, D_v = 55) or "haar" (OpenCV Haar cascades only, D_v = 7)."""
    fps: float = 15.0
    """Frames per second the pipeline samples (recorded here; the decoder uses it)."""
    max_side: int = 480
    """Frames whose longer side exceeds this are downscaled (INTER_AREA) before detection."""
    min_detection_confidence: float = 0.5
    """FaceMesh face-detector threshold (mediapipe backend; the haar backend ignores it)."""
    haar_redetect: bool = True
    """mediapipe backend: retry frames without a face on crops around the previous face / Haar boxes."""

    def __post_init__(self) -> None:
        if self.backend not in ("mediapipe", "haar"):
            raise ValueError(f"VisionConfig.backend={self.backend!r}; expected 'mediapipe' or 'haar'")
        if not self.fps > 0:
            raise ValueError(f"VisionConfig.fps={self.fps}; expected > 0")
        if self.max_side < 32:
            raise ValueError(f"VisionConfig.max_side={self.max_side}; expected >= 32 pixels")
        if not 0.0 <= self.min_detection_confidence <= 1.0:
            raise ValueError(f"VisionConfig.min_detection_confidence={self.min_detection_confidence}; expected [0, 1]")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------- extractor


def _require_cascades(cv2, why: str) -> str:
    """Directory of OpenCV's bundled Haar cascades, or a clear error (OpenCV 5 dropped them)."""
    base = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if base is None or not hasattr(cv2, "CascadeClassifier"):
        raise MissingExtraError(
            f"{why} needs OpenCV's Haar cascades (cv2.CascadeClassifier and cv2.data.haarcascades), which "
            f"OpenCV {cv2.__version__} lacks; install OpenCV 4 "
            "(pip install 'emodistill[video]' gives opencv-contrib-python<5)"
        )
    return base


def _landmarks(result, w: int, h: int) -> np.ndarray | None:
    """(478, 3) pixel-scaled landmarks ``(x w, y h, z w)`` of the first face in a FaceMesh ``result`` on a
    ``w`` x ``h`` image, or None."""
    if not result.multi_face_landmarks:
        return None
    lm = result.multi_face_landmarks[0].landmark
    return np.array([(p.x, p.y, p.z) for p in lm], np.float64) * (w, h, w)  # (478, 3)


class FaceFeatureExtractor:
    """Callable turning the frames of one clip into ``(features (T, D_v) float32, present (T,) bool)``.

    Holds two MediaPipe graphs (a tracking one, reset at every call, and a static one for fall-backs) and the
    Haar cascades; :meth:`close` (or leaving a ``with`` block) releases the graphs.
    """

    def __init__(self, cfg: VisionConfig) -> None:
        self.cfg = cfg
        self._cv2 = require("cv2", "video", "face detection")
        if cfg.backend == "mediapipe":
            quiet_third_party_logs()  # before the import: MediaPipe's C++ INFO/WARNING lines on stderr
        self._mp = require("mediapipe", "video", "facial landmarks") if cfg.backend == "mediapipe" else None
        self._track_mesh = self._static_mesh = None  # built on first use
        self._track_used = False
        self._casc: dict[str, object] = {}
        if cfg.backend == "haar" or cfg.haar_redetect:
            why = "VisionConfig(backend='haar')" if cfg.backend == "haar" else "haar_redetect=True (or set it False)"
            base = _require_cascades(self._cv2, why)
            names = ("frontalface_default", "eye", "smile") if cfg.backend == "haar" else ("frontalface_default",)
            for name in names:
                casc = self._cv2.CascadeClassifier(f"{base}haarcascade_{name}.xml")
                if casc.empty():
                    raise MissingExtraError(f"cannot load {base}haarcascade_{name}.xml; reinstall opencv<5")
                self._casc[name] = casc

    @property
    def feature_names(self) -> list[str]:
        """The D_v column names, in order; the last one is ``"face_present"``."""
        return list(MP_FEATURES if self.cfg.backend == "mediapipe" else HAAR_FEATURES)

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features of consecutive frames of one clip; nothing carries over from earlier calls.

        Args:
            frames: (T, H, W, 3) uint8 RGB.

        Returns:
            features (T, D_v) float32 in :attr:`feature_names` order, all-zero rows where no face;
            present (T,) bool.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected (T, H, W, 3) uint8 RGB, got shape {frames.shape} {frames.dtype}")
        if self.cfg.backend != "mediapipe":
            return self._features(frames)
        with filtered_native_stderr():  # MediaPipe / TFLite log from C++ threads when the graphs start
            return self._features(frames)

    def _features(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`__call__` without the checks and the log filter."""
        feats = np.zeros((len(frames), len(self.feature_names)), np.float32)  # (T, D_v)
        present = np.zeros(len(frames), bool)
        if self.cfg.backend == "mediapipe":
            self._reset_tracking()
            per_frame = _MeshClip(self)
        else:
            per_frame = _HaarClip(self)
        for t, frame in enumerate(frames):
            row = per_frame(frame)  # (D_v - 1,) or None
            if row is not None:
                feats[t, :-1], feats[t, -1], present[t] = row, 1.0, True
        return feats, present

    def close(self) -> None:
        """Release the MediaPipe graphs (they are rebuilt if the extractor is called again)."""
        with filtered_native_stderr():  # closing a graph can log from its threads too
            for mesh in (self._track_mesh, self._static_mesh):
                if mesh is not None:
                    mesh.close()
        self._track_mesh = self._static_mesh = None

    def __enter__(self) -> FaceFeatureExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- helpers shared by both backends

    def _small(self, image: np.ndarray) -> np.ndarray:
        """``image`` downscaled so that its longer side is at most ``max_side`` (contiguous, for MediaPipe)."""
        h, w = image.shape[:2]
        s = self.cfg.max_side / max(h, w)
        if s >= 1.0:
            return np.ascontiguousarray(image)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return self._cv2.resize(image, size, interpolation=self._cv2.INTER_AREA)

    def _haar_boxes(self, gray: np.ndarray, name: str, **kw) -> np.ndarray:
        """(N, 4) x, y, w, h boxes of cascade ``name``, largest first."""
        boxes = np.asarray(self._casc[name].detectMultiScale(gray, **kw), int).reshape(-1, 4)
        return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")]

    def _faces(self, gray: np.ndarray, max_size: int | None = None, **kw) -> np.ndarray:
        """(N, 4) Haar face boxes from 24 to ``max_size`` px in the whole image, largest first."""
        big = max_size or max(gray.shape)
        kw = {"scaleFactor": 1.1, "minNeighbors": 5} | kw
        return self._haar_boxes(gray, "frontalface_default", minSize=(24, 24), maxSize=(big, big), **kw)

    def _haar_features(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Haar-backend features (6,) of the face ``box`` (x, y, w, h) in ``gray``."""
        x, y, w, h = box
        # eyes and smile are searched on the face resized to 96 px: the same cost and scale for every face size
        face = self._cv2.resize(gray[y : y + h, x : x + w], (96, 96), interpolation=self._cv2.INTER_AREA)
        eyes = self._haar_boxes(face[:58], "eye", scaleFactor=1.2, minNeighbors=5, minSize=(14, 14), maxSize=(36, 36))
        smile = self._haar_boxes(face[48:], "smile", scaleFactor=1.2, minNeighbors=20, minSize=(30, 15))
        H, W = gray.shape
        return np.array([(x + w / 2) / W, (y + h / 2) / H, w / W, h / H, min(len(eyes), 2), float(len(smile) > 0)])

    # ---- MediaPipe graphs

    def _new_mesh(self, static: bool):
        return self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.cfg.min_detection_confidence,
        )

    def _reset_tracking(self) -> None:
        """Forget the tracked face (new clip or shot cut); a fresh graph run gives identical results."""
        if self._track_mesh is None:
            self._track_mesh = self._new_mesh(static=False)
        elif self._track_used:
            self._track_mesh.reset()
        self._track_used = False

    def _track(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks in ``image`` pixels from the tracking graph, or None."""
        self._track_used = True
        return _landmarks(self._track_mesh.process(image), image.shape[1], image.shape[0])

    def _detect(self, image: np.ndarray) -> np.ndarray | None:
        """(478, 3) landmarks in ``image`` pixels from the static graph (detector every time), or None."""
        if self._static_mesh is None:
            self._static_mesh = self._new_mesh(static=True)
        h, w = image.shape[:2]
        # normalised coordinates do not change when the image is downscaled for speed
        return _landmarks(self._static_mesh.process(self._small(image)), w, h)


class _MeshClip:
    """Per-call state of the mediapipe backend, so nothing leaks between clips: the previous frame's thumbnail,
    face box and where that face came from, and the Haar back-off counter. Called once per frame, in order."""

    def __init__(self, owner: FaceFeatureExtractor) -> None:
        self.o = owner
        self.prev_thumb: np.ndarray | None = None  # (16, 16) float32
        self.prev_box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 of the last face, `small` pixels
        self.source: str | None = None  # "track" | "detect" | "crop": what found the last face
        self.haar_wait = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """Features (D_v - 1,) of one frame, or None without a face."""
        o = self.o
        small = o._small(frame)
        h, w = small.shape[:2]
        # (16, 16) thumbnail of the green channel (a luma proxy) of every 4th pixel: 0.05 ms, enough to see cuts
        thumb = o._cv2.resize(np.ascontiguousarray(small[::4, ::4, 1]), (16, 16), interpolation=o._cv2.INTER_AREA)
        thumb = thumb.astype(np.float32)
        if self.prev_box is not None and np.abs(thumb - self.prev_thumb).mean() > _CUT_DIFF:
            # a shot cut: the tracker would keep fitting landmarks inside the old face's box
            if self.source == "track":
                o._reset_tracking()
            self.prev_box = self.source = None
        self.prev_thumb = thumb
        P, source = None, self.source
        if source == "crop":  # a small face: the full frame would miss it again, go straight to its crop
            P = self._crop_prev(frame, small)
        if P is None:
            P, source = o._track(small), "track"  # (478, 3) `small` pixels
        if P is None and self.source == "track":
            # the tracker re-runs its detector only on the frame *after* it lost a face; do it now
            P, source = o._detect(small), "detect"
        if P is None and o.cfg.haar_redetect:
            P, source = self._redetect(frame, small), "crop"
        self.prev_box = None if P is None else np.concatenate([P[:, :2].min(0), P[:, :2].max(0)])
        self.source = None if P is None else source
        return None if P is None else face_features(P, w, h)

    def _crop_prev(self, frame: np.ndarray, small: np.ndarray) -> np.ndarray | None:
        x0, y0, x1, y1 = self.prev_box
        return self._crop(frame, small, (x0 + x1) / 2, (y0 + y1) / 2, _TRACK_CROP * max(x1 - x0, y1 - y0))

    def _redetect(self, frame: np.ndarray, small: np.ndarray) -> np.ndarray | None:
        """Landmarks (478, 3) in `small` pixels found on full-resolution crops around the previous face box
        (unless already tried), then around up to three Haar boxes; or None."""
        if self.prev_box is not None and self.source != "crop":
            P = self._crop_prev(frame, small)
            if P is not None:
                return P
        if self.haar_wait > 0:
            self.haar_wait -= 1
            return None
        # only faces up to a fifth of the frame: larger ones are FaceMesh's job, and the limit saves time
        # scaleFactor 1.15 / minNeighbors 4: 30 % cheaper than 1.1 / 5 and still finds 24-30 px faces; the static
        # graph rejects false boxes anyway
        gray = self.o._cv2.cvtColor(small, self.o._cv2.COLOR_RGB2GRAY)
        boxes = self.o._faces(gray, min(small.shape[:2]) // 5, scaleFactor=1.15, minNeighbors=4)
        for x, y, bw, bh in boxes[:3]:  # the largest box can be a false positive: try the next ones too
            P = self._crop(frame, small, x + bw / 2, y + bh / 2, _HAAR_CROP * bw)
            if P is not None:
                return P
        self.haar_wait = _HAAR_GAP
        return None

    def _crop(self, frame: np.ndarray, small: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
        """Landmarks (478, 3) in `small` pixels from a full-resolution crop of the square of side ``side``
        centred at (cx, cy) (`small` pixels, clipped to the frame), or None."""
        H, W = frame.shape[:2]
        scale = np.array([W / small.shape[1], H / small.shape[0], W / small.shape[1]])  # z scales like x
        x0, y0 = max(0, int((cx - side / 2) * scale[0])), max(0, int((cy - side / 2) * scale[1]))
        x1, y1 = min(W, int((cx + side / 2) * scale[0])), min(H, int((cy + side / 2) * scale[1]))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        P = self.o._detect(frame[y0:y1, x0:x1])  # (478, 3) crop pixels at full resolution
        return None if P is None else (P + (x0, y0, 0.0)) / scale


class _HaarClip:
    """Per-call state of the haar backend: the previous face box, tracked by searching a window twice its size
    for faces 0.75-1.35 times as wide (a full-frame search costs ~30 ms on plain and ~150 ms on busy 480-px
    frames), and the back-off counter of full-frame searches."""

    def __init__(self, owner: FaceFeatureExtractor) -> None:
        self.o = owner
        self.prev: np.ndarray | None = None  # (4,) x, y, w, h in `small` pixels
        self.wait = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """Features (D_v - 1,) of one frame, or None without a face."""
        o = self.o
        gray = o._cv2.cvtColor(o._small(frame), o._cv2.COLOR_RGB2GRAY)
        box = None if self.prev is None else self._near(gray, self.prev)
        if box is None and self.wait > 0:
            self.wait -= 1
        elif box is None:
            faces = o._faces(gray)
            box = faces[0] if len(faces) else None
            self.wait = 0 if len(faces) else _HAAR_GAP
        self.prev = box
        return None if box is None else o._haar_features(gray, box)

    def _near(self, gray: np.ndarray, prev: np.ndarray) -> np.ndarray | None:
        """The largest face box (4,) in a window twice the size of ``prev`` around it, or None."""
        x, y, w, h = prev
        x0, y0 = max(0, x - w // 2), max(0, y - h // 2)
        window = gray[y0 : y + h + h // 2, x0 : x + w + w // 2]
        lo, hi = max(24, int(0.75 * w)), int(1.35 * w) + 1
        boxes = self.o._haar_boxes(window, "frontalface_default", scaleFactor=1.1, minNeighbors=5,
                                   minSize=(lo, lo), maxSize=(hi, hi))
        return boxes[0] + (x0, y0, 0, 0) if len(boxes) else None
