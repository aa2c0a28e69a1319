"""Third-party log filtering (emodistill.extract.logs): native lines dropped by default, shown when verbose."""

import os

import pytest

from emodistill.extract import logs

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "W0000 00:00:1796599683.551716   11632 inference_feedback_manager.cc:114] Feedback manager requires ...\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)


def _write_native(text: str) -> None:
    os.write(2, text.encode())  # straight to fd 2, as C++ code does


def test_native_log_lines_are_dropped_other_lines_kept(capfd, monkeypatch):
    monkeypatch.setenv(logs.DEBUG_ENV, "0")
    with logs.filtered_native_stderr():
        _write_native(NOISE + "a real error message\n")
    err = capfd.readouterr().err
    assert err == "a real error message\n"


@pytest.mark.parametrize("value", ["1", "yes"])
def test_debug_env_shows_everything(capfd, monkeypatch, value):
    monkeypatch.setenv(logs.DEBUG_ENV, value)
    with logs.filtered_native_stderr():
        _write_native(NOISE)
    assert capfd.readouterr().err == NOISE


def test_quiet_sets_log_levels_unless_verbose(monkeypatch):
    for name in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL", logs.DEBUG_ENV):
        # setenv first, so that monkeypatch records the original state and restores it after the test even
        # though the code under test writes os.environ itself (delenv of an absent name records nothing)
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    logs.quiet_third_party_logs()
    assert os.environ["GLOG_minloglevel"] == "2" and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.delenv("GLOG_minloglevel")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    logs.set_verbose()  # what --verbose does
    logs.quiet_third_party_logs()
    assert "GLOG_minloglevel" not in os.environ and "TF_CPP_MIN_LOG_LEVEL" not in os.environ


def test_environment_is_restored_after_the_test_above():
    assert os.environ.get(logs.DEBUG_ENV, "") in ("", "0")


def test_verbose_flag_on_predict_and_extract():
    from emodistill.cli import build_parser

    p = build_parser()
    assert p.parse_args(["predict", "v.mp4", "--checkpoint", "c", "--verbose"]).verbose
    assert p.parse_args(["extract", "d", "--labels", "l", "-o", "o", "--verbose"]).verbose
