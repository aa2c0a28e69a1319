"""The service's documented bodies (they become its OpenAPI schema at ``/openapi.json``, shown at ``/docs``).

A prediction is what ``emodistill predict`` prints for one video
(:mod:`emodistill.inference.predictor`), plus ``version`` (of emodistill) and two service timings in
``seconds``: ``queue`` (waiting for the model thread) and ``request`` (the whole request, upload included).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, in one line")
    status: int = Field(description="the HTTP status, repeated")


class Frames(BaseModel):
    audio: int = Field(description="audio frames extracted")
    vision: int = Field(description="video frames sampled")
    vision_with_face: int = Field(description="sampled frames with a face")
    truncated: list[str] = Field(description="modalities cut at the trained length")


class Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str = Field(description="emodistill version of the service")
    video: str | None = Field(None, description="the uploaded file's name, as the client gave it (display only)")
    transcript: str | None = Field(None, description="the words the language features were made from")
    timing: str | None = Field(None, description="where the word timings came from")
    backend: str = Field(description="torch or onnx")
    score: float = Field(description="predicted sentiment, -3 (strongly negative) .. +3; a logit for binary tasks")
    probability: float | None = Field(None, description="binary tasks: P(class 1)")
    label_7: int | None = Field(None, description="round of the clipped score, -3..3 (MOSI/MOSEI convention)")
    label_7_name: str | None = Field(None, description="name of label_7")
    label_2: str = Field(description="positive (score >= 0) or negative")
    branches: dict[str, dict[str, float]] | None = Field(
        None, description="DMD/DHMD: per-modality head predictions, {homo|hetero: {text, vision, audio}}")
    edges: dict[str, dict[str, float]] | None = Field(
        None, description="DMD/DHMD: GD-Unit edge weights of the clip, {homo|hetero: {'V->L': w, ...}}")
    frames: Frames | None = None
    seconds: dict[str, float] = Field(description="per-stage seconds: decode, audio, vision, asr, text, model, "
                                                  "queue, request")


class Segment(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    start: float
    end: float
    transcript: str
    status: str = Field(description="ok, no speech or no face; only ok segments are scored")
    score: float | None = None
    label_7: int | None = None
    label_2: str | None = None


class Timeline(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    video: str | None
    duration: float
    segmentation: str
    timing: str
    backend: str
    segments: list[Segment]
    seconds: dict[str, float]


class FeatureRequest(BaseModel):
    """One clip's stored features, named as the keys of an MMSA pickle (one row of each array)."""

    model_config = ConfigDict(extra="forbid")
    text: list[list[float]] = Field(description="(L, D_t) word features")
    text_bert: list[list[float]] | None = Field(None, description="(3, L) input ids, mask, segment ids; needed "
                                                                  "when the model's data had them")
    audio: list[list[float]] = Field(description="(T_a, D_a) acoustic frames")
    vision: list[list[float]] = Field(description="(T_v, D_v) visual frames")
    audio_lengths: int | None = Field(None, description="unaligned data: true audio frames (default T_a)")
    vision_lengths: int | None = Field(None, description="unaligned data: true visual frames (default T_v)")


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    checkpoint: str
    model: str
    backend: str
    spec: dict
    labels: dict
    videos: bool = Field(description="whether /v1/predict and /v1/timeline work (the checkpoint has an "
                                     "extraction record)")
    speech_recognition: bool = Field(description="whether a video without transcript is transcribed")
    extraction: dict | None
    features: dict[str, str] = Field(description="/v1/predict/features: key -> expected shape")
    limits: dict


class Health(BaseModel):
    status: str
    version: str
    queue: dict[str, int]
