"""`emodistill serve` as a user meets it: the real server (uvicorn in a child process on a free 127.0.0.1
port) with the tiny DMD of the shared video fixture, called over HTTP. Predictions are checked against
`emodistill predict` and the model itself; every refused request against its status and message."""

from __future__ import annotations

import json
import pickle
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is part of the test set-up")
pytest.importorskip("av", reason="the video extra is part of the test set-up")

from emodistill.cli import main  # noqa: E402
from emodistill.data import load_dataset  # noqa: E402
from emodistill.data.loader import BatchLoader  # noqa: E402
from emodistill.models.registry import load_checkpoint  # noqa: E402
from emodistill.serve.launch import ServiceProcess  # noqa: E402

TOKEN = "s3cret-" + uuid.uuid4().hex
SECRET_WORDS = "Purple elephants whisper quietly"  # a transcript that must never reach the log


def call(url: str, *, token: str | None = TOKEN, data: bytes | None = None, content_type: str | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one request."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), dict(e.headers)


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, str]:
    """A multipart/form-data body: a str value is a text field, (file name, bytes) a file."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n' \
                   "Content-Type: application/octet-stream\r\n\r\n"
            parts.append(f"--{boundary}\r\n{head}".encode() + value[1] + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_video(url: str, path: Path | None, transcript: str | None = None, name: str | None = None,
               token: str | None = TOKEN, **fields) -> tuple[int, dict, dict]:
    form: dict = dict(fields)
    if path is not None:
        form["video"] = (name or path.name, path.read_bytes())
    if transcript is not None:
        form["transcript"] = transcript
    body, kind = multipart(form)
    return call(url, data=body, content_type=kind, token=token)


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-uploads")


@pytest.fixture(scope="module")
def service(trained, uploads):
    """The service with a token, a 1 MB upload limit, a 6 s duration limit and a queue of one."""
    with ServiceProcess(trained, "--token", TOKEN, "--max-upload-mb", "1", "--max-seconds", "6", "--queue", "1",
                        "--tmp-dir", str(uploads), "--threads", "1", "--upload-timeout", "3") as s:
        yield s


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """8 s of the astronaut with speech then silence (longer than --max-seconds 6)."""
    from media import face_frames, speech, write_video

    wav = speech("This clip goes on for far too long.")
    audio = np.concatenate([wav, np.zeros(8 * 16000 - len(wav), np.float32)])
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", face_frames(8 * 15, 128), fps=15, audio=audio)


def test_health_needs_no_token_and_reports_ready(service):
    status, body, _ = call(service.url + "/v1/health", token=None)
    assert status == 200 and body["status"] == "ready"
    assert body["queue"] == {"admitted": 0, "capacity": 1}


@pytest.mark.parametrize("token", [None, "wrong"])
def test_every_other_endpoint_needs_the_token(service, media_dir, token):
    clip = media_dir / "videos" / "clip6.mp4"
    status, body, headers = call(service.url + "/v1/model", token=token)
    assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert body["error"].startswith(("missing token", "wrong token")) and body["status"] == 401
    assert post_video(service.url + "/v1/predict", clip, SENTENCES_6, token=token)[0] == 401
    assert post_video(service.url + "/v1/timeline", clip, SENTENCES_6, token=token)[0] == 401
    assert call(service.url + "/v1/predict/features", data=b"{}", content_type="application/json",
                token=token)[0] == 401


SENTENCES_6 = "Absolutely brilliant and moving."


def test_model_describes_spec_labels_extraction_and_limits(service, trained):
    status, body, _ = call(service.url + "/v1/model")
    assert status == 200
    ckpt = torch.load(trained, map_location="cpu", weights_only=False)
    assert body["model"] == "dmd" and body["backend"] == "torch" and body["videos"] is True
    assert body["spec"] == json.loads(json.dumps(ckpt["spec"]))
    assert body["labels"]["label_7"]["-3"] == "strongly negative" and body["labels"]["range"] == [-3.0, 3.0]
    assert body["extraction"]["feature_names"] == ckpt["extract_config"]["feature_names"]
    assert body["limits"] == {"max_upload_mb": 1.0, "max_seconds": 6.0, "max_timeline_seconds": 1800.0, "queue": 1}
    assert body["speech_recognition"] is False


def test_predict_equals_the_cli(service, trained, media_dir, capsys):
    clip = media_dir / "videos" / "clip6.mp4"
    assert main(["predict", str(clip), "--checkpoint", str(trained), "--transcript", SENTENCES_6]) == 0
    cli = json.loads(capsys.readouterr().out)
    status, body, _ = post_video(service.url + "/v1/predict", clip, SENTENCES_6, name="../../etc/my clip.mp4")
    assert status == 200, body
    assert body["version"] and body["video"] == "my clip.mp4"  # the client's name, for display only
    assert abs(body["score"] - cli["score"]) < 1e-5
    assert (body["label_7"], body["label_2"]) == (cli["label_7"], cli["label_2"])
    for space in ("homo", "hetero"):
        for key in ("branches", "edges"):
            np.testing.assert_allclose(list(body[key][space].values()), list(cli[key][space].values()), atol=1e-5)
    assert body["frames"] == cli["frames"] and body["transcript"] == cli["transcript"]
    assert set(cli) - {"video"} <= set(body)  # the CLI's schema, plus version and service timings
    assert {"queue", "request", "model", "decode"} <= set(body["seconds"])


def test_features_equal_the_model_on_a_stored_row(service, trained, extracted):
    data = load_dataset(extracted)
    row = data.test
    with open(extracted, "rb") as f:
        stored = pickle.load(f)["test"]
    arrays = {k: np.asarray(stored[k][0]).tolist() for k in ("text", "text_bert", "audio", "vision")}
    arrays.update(audio_lengths=int(stored["audio_lengths"][0]), vision_lengths=int(stored["vision_lengths"][0]))
    status, body, _ = call(service.url + "/v1/predict/features", data=json.dumps(arrays).encode(),
                           content_type="application/json")
    assert status == 200, body
    model, _ = load_checkpoint(trained)
    batch = next(iter(BatchLoader(row, 1, shuffle=False)))
    with torch.no_grad():
        expected = float(model(batch).prediction.view(-1)[0])  # the training forward, not the inference path
    assert abs(body["score"] - expected) < 1e-5
    # a shorter audio sequence is padded as the reader pads: same answer
    n = arrays["audio_lengths"]
    cut = {**arrays, "audio": arrays["audio"][:n]}
    assert abs(call(service.url + "/v1/predict/features", data=json.dumps(cut).encode(),
                    content_type="application/json")[1]["score"] - expected) < 1e-5


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: {**a, "audio": [r[:-1] for r in a["audio"]]},
     "audio: expected shape (T <= {T_a}, {D_a}), found ({T_a}, {d})"),
    (lambda a: {**a, "vision": a["vision"] + a["vision"]},
     "vision: expected shape (T <= {T_v}, {D_v}), found ({tv2}, {D_v})"),
    (lambda a: {k: v for k, v in a.items() if k != "text_bert"},
     "text_bert: missing; expected an array of shape (3, L)"),
    (lambda a: {**a, "text": [[1.0, 2.0], [3.0]]}, "text: expected a 2-D array of numbers"),
    (lambda a: {**a, "colour": [[1.0]]}, "colour: Extra inputs are not permitted"),
])
def test_wrong_feature_shapes_name_key_expected_and_found(service, extracted, change, message):
    with open(extracted, "rb") as f:
        stored = pickle.load(f)["test"]
    arrays = {k: np.asarray(stored[k][0]).tolist() for k in ("text", "text_bert", "audio", "vision")}
    (t_a, d_a), (t_v, d_v) = np.shape(arrays["audio"]), np.shape(arrays["vision"])
    status, body, _ = call(service.url + "/v1/predict/features", data=json.dumps(change(arrays)).encode(),
                           content_type="application/json")
    assert status == 422
    expected = message.format(T_a=t_a, D_a=d_a, d=d_a - 1, T_v=t_v, D_v=d_v, tv2=2 * t_v)
    assert body["error"].startswith(expected), body
    assert "\n" not in body["error"]


def test_bad_requests_get_their_status_and_one_line(service, media_dir, long_video, tmp_path):
    url = service.url + "/v1/predict"
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"these are not the frames you are looking for" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(1_200_000))
    cases = [
        (post_video(url, None, "words"), 422, "no video: send the file in the multipart form field 'video'"),
        (post_video(url, empty, "words"), 422, "the uploaded video is empty (0 bytes)"),
        (post_video(url, junk, "words"), 415, "not a video: unreadable or corrupt video file"),
        (post_video(service.url + "/v1/timeline", media_dir / "bad" / "good.mp4", "words", segments="0.5"), 422,
         "segments: expected a window of at least 1 s, found '0.5'"),
        (post_video(url, big, "words"), 413, "the request is 1.2 MB, over the limit of 1 MB (--max-upload-mb)"),
        (post_video(url, long_video, "words"), 422, "the video lasts 8.0 s, over the limit of 6 s (--max-seconds)"),
        (post_video(url, media_dir / "bad" / "noaudio.mp4", "words"), 422,
         "no audio stream (the audio modality cannot be extracted)"),
        (post_video(url, media_dir / "bad" / "noface.mp4", "words"), 422, "no face detected in any of"),
        (post_video(url, media_dir / "bad" / "good.mp4"), 422, "no transcript: send what is said in the form field"),
        (post_video(service.url + "/v1/timeline", media_dir / "bad" / "good.mp4", "words", segments="soon"), 422,
         "segments: expected 'auto' or a number of seconds, found 'soon'"),
    ]
    for (status, body, _), want_status, want in cases:
        assert (status, body.get("status")) == (want_status, want_status), (want, body)
        assert body["error"].startswith(want), body
        assert "\n" not in body["error"] and "emodistill-serve-" not in body["error"]  # no server path either
    status, body, _ = call(url, data=b"x" * 10, content_type="multipart/form-data; boundary=zzz")
    assert (status, body) == (400, {"error": "Invalid multipart data.", "status": 400})
    assert call(service.url + "/v1/nothing")[:2] == (404, {"error": "Not Found", "status": 404})


def test_uploads_are_deleted_and_logs_hold_no_secret(service, media_dir, uploads):
    clip = media_dir / "videos" / "clip7.mp4"
    assert post_video(service.url + "/v1/predict", clip, SECRET_WORDS)[0] == 200
    assert post_video(service.url + "/v1/predict", media_dir / "bad" / "noface.mp4", SECRET_WORDS)[0] == 422
    roots = list(uploads.iterdir())
    assert len(roots) == 1 and roots[0].name.startswith("emodistill-serve-")
    assert oct(roots[0].stat().st_mode & 0o777) == "0o700"
    assert list(roots[0].iterdir()) == []  # every request's private directory is gone, success or failure
    log = service.output()
    assert "POST /v1/predict 200" in log  # one line per request ...
    assert TOKEN not in log and SECRET_WORDS not in log and "clip7" not in log  # ... with nothing private


def test_timeline_equals_the_cli(service, trained, media_dir, capsys):
    clip = media_dir / "videos" / "clip0.mp4"
    text = "I really love this wonderful movie."
    assert main(["predict", str(clip), "--checkpoint", str(trained), "--transcript", text, "--segments", "1"]) == 0
    cli = json.loads(capsys.readouterr().out.split("\ntimeline:")[0])
    status, body, _ = post_video(service.url + "/v1/timeline", clip, text, segments="1")
    assert status == 200, body
    assert [s["status"] for s in body["segments"]] == [s["status"] for s in cli["segments"]]
    assert any(s["status"] == "ok" for s in body["segments"])
    for a, b in zip(body["segments"], cli["segments"], strict=True):
        assert (a["start"], a["end"]) == (b["start"], b["end"])
        if a["status"] == "ok":
            assert abs(a["score"] - b["score"]) < 1e-5


def test_a_full_queue_answers_503_then_recovers(service, media_dir):
    clip = media_dir / "videos" / "clip5.mp4"
    answers: list = []

    def send():
        answers.append(post_video(service.url + "/v1/predict", clip, "The plot was okay but slow."))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(a[0] for a in answers)
    assert 200 in statuses and 503 in statuses, statuses
    refused = next(a for a in answers if a[0] == 503)
    assert int(refused[2]["retry-after"]) >= 1
    assert refused[1]["error"].startswith("busy: 1 requests are already running or waiting")
    assert post_video(service.url + "/v1/predict", clip, "The plot was okay but slow.")[0] == 200  # recovered
    assert call(service.url + "/v1/health", token=None)[1]["queue"]["admitted"] == 0


def test_docs_and_page_load_nothing_from_outside(service):
    import re

    for page in ("/docs", "/"):
        with urllib.request.urlopen(service.url + page) as r:
            html = r.read().decode()
        refs = re.findall(r'(?:src|href)=["\']([^"\']+)', html)
        assert refs and all(not ref.startswith(("http:", "https:", "//")) for ref in refs), refs
        for ref in refs:
            if ref.startswith("/"):
                with urllib.request.urlopen(service.url + ref) as r:
                    assert r.status == 200 and r.read()
    status, schema, _ = call(service.url + "/openapi.json", token=None)
    assert status == 200
    assert {"/v1/predict", "/v1/predict/features", "/v1/timeline", "/v1/model", "/v1/health"} <= set(schema["paths"])
    assert "Prediction" in schema["components"]["schemas"]


def test_workers_each_load_the_model_once(trained, media_dir):
    clip = media_dir / "videos" / "clip6.mp4"
    other = "from-the-environment-" + uuid.uuid4().hex  # the token given by EMODISTILL_SERVE_TOKEN, not --token
    with ServiceProcess(trained, "--workers", "2", "--threads", "1", env={"EMODISTILL_SERVE_TOKEN": other}) as s:
        assert call(s.url + "/v1/model", token=None)[0] == 401
        assert call(s.url + "/v1/model", token=other)[0] == 200
        answers = [post_video(s.url + "/v1/predict", clip, SENTENCES_6, token=other) for _ in range(4)]
        assert [a[0] for a in answers] == [200] * 4
        assert len({round(a[1]["score"], 6) for a in answers}) == 1  # every worker, the same model
        assert s.output().count("loaded; backend torch") == 2  # once per worker process, not per request


def test_serve_refuses_bad_options_in_one_line(trained, tmp_path, capsys):
    import socket

    assert main(["serve", "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    missing = tmp_path / "none.ckpt"
    assert capsys.readouterr().err.strip() == f"emodistill serve: error: --checkpoint: no such file: {missing}"
    assert main(["serve", "--checkpoint", str(trained), "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb: expected a number > 0, found 0.0" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert main(["serve", "--checkpoint", str(trained), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"emodistill serve: error: --host 127.0.0.1 --port {port}: cannot listen there") and \
        err.count("\n") == 1


def _raw(service, request: bytes, wait: float = 0.0) -> tuple[int, dict]:
    """Send raw bytes (headers and perhaps part of a body), optionally stall, and read the answer."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(request)
        time.sleep(wait)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b'"status"' in data:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_stalled_upload_gets_408_and_frees_its_place(service):
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n").encode()
    status, body = _raw(service, head + b"--b\r\nContent-Disposition: form-data; name=", wait=4)
    assert (status, body) == (408, {"error": "the request body did not arrive within 3 s (--upload-timeout)",
                                    "status": 408})
    assert call(service.url + "/v1/health", token=None)[1]["queue"]["admitted"] == 0


def test_chunked_bodies_and_foreign_hosts_are_refused(service):
    chunked = (f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
               "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n0\r\n\r\n").encode()
    status, body = _raw(service, chunked)
    assert status == 411 and body["error"].startswith("the request has no Content-Length")
    status, body, _ = call(service.url + "/v1/health", token=None, headers={"Host": "rebind.example:8000"})
    assert status == 400
    assert body["error"] == ("Host 'rebind.example': this service listens on a loopback address and answers only "
                             "requests for 127.0.0.1, localhost or [::1]")


def test_a_checkpoint_without_extraction_serves_features_only(aligned_pkl, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "dmd", "--data", str(aligned_pkl), "--epochs", "1", "--quiet", "--run-dir",
                 str(run), "--train.update_every", "1", "--model.d_model", "8", "--model.num_heads", "2",
                 "--model.nlevels", "1", "--model.gd_size_homo", "8", "--model.gd_size_hetero", "4"]) == 0
    data = load_dataset(aligned_pkl)
    with ServiceProcess(run / "best.ckpt", "--threads", "1") as s:
        status, info, _ = call(s.url + "/v1/model", token=None)
        assert status == 200 and info["videos"] is False and info["extraction"] is None
        assert info["features"]["audio"] == f"(L, {data.spec.feature_dims['audio']})"
        clip = Path(__file__).with_name("data")  # any file: the service refuses before reading it as video
        status, body, _ = post_video(s.url + "/v1/predict", next(p for p in clip.rglob("*") if p.is_file()),
                                     "words", token=None)
        assert status == 422 and body["error"].startswith("this model predicts from features only")
        row = {k: getattr(data.test, k)[0].tolist() for k in ("text", "audio", "vision")}
        if data.spec.has_text_bert:
            row["text_bert"] = data.test.text_bert[0].tolist()
        status, body, _ = call(s.url + "/v1/predict/features", token=None, data=json.dumps(row).encode(),
                               content_type="application/json")
        assert status == 200, body
        model, _ = load_checkpoint(run / "best.ckpt")
        with torch.no_grad():
            expected = float(model(next(iter(BatchLoader(data.test, 1, shuffle=False)))).prediction.view(-1)[0])
        assert abs(body["score"] - expected) < 1e-5
        short = {**row, "audio": row["audio"][:-1]}  # aligned: one row per word
        status, body, _ = call(s.url + "/v1/predict/features", token=None, data=json.dumps(short).encode(),
                               content_type="application/json")
        assert status == 422 and body["error"].startswith("audio: expected shape (")
