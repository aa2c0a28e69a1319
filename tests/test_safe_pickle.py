"""The restricted unpickler loads numpy/container pickles and refuses everything else unexecuted."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from emodistill.data import load_dataset
from emodistill.data.safe_pickle import UnsafePickleError, is_allowed, safe_load


class _Payload:
    """Pickles as ``func(*args)``: what an attacker puts in a .pkl."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _attacks(marker):
    shell = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return [
        (os.system, (shell,)),
        (builtins.eval, (code,)),
        (builtins.exec, (code,)),
        (subprocess.call, ([sys.executable, "-c", code],)),
    ]


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, index, protocol):
    marker = tmp_path / "marker"
    func, args = _attacks(marker)[index]
    # Hidden inside an otherwise valid MMSA-looking dict.
    payload = {"train": {"text": np.zeros((1, 2, 3), np.float32), "id": _Payload(func, args)}}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))

    with pytest.raises(UnsafePickleError) as info:
        safe_load(path)
    refused = f"{func.__module__}.{func.__qualname__}"  # e.g. posix.system, builtins.eval
    assert refused in str(info.value)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_load_dataset_refuses_malicious_file(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "aligned_50.pkl"
    path.write_bytes(pickle.dumps({"train": _Payload(os.system, (f"touch {marker}",))}))
    with pytest.raises(UnsafePickleError, match="system"):
        load_dataset(path)
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"c_codecs\nencode\n(Vx\nVrot13\ntR.")  # protocol 0: _codecs.encode("x", "rot13")
    with pytest.raises(UnsafePickleError, match="rot13"):
        safe_load(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_scalars_and_string_objects_load(tmp_path, protocol):
    ids = np.array(["vid_a$_$0", np.str_("vid_b$_$1")], dtype=object)  # MMSA stores str in object arrays
    obj = {
        "train": {
            "text": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
            "lengths": np.array([3, 1], dtype=np.int64),
            "id": ids,
            "raw_text": np.array(["a b c", "ünïcödé"], dtype=object),
            "unicode": np.array(["x", "yz"]),  # fixed-width '<U2'
            "scalar": np.float32(1.5),
            "nested": [1, (2.0, "s"), {"k": None}],
        }
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    loaded = safe_load(path)["train"]
    np.testing.assert_array_equal(loaded["text"], obj["train"]["text"])
    assert loaded["text"].dtype == np.float32
    assert list(loaded["id"]) == ["vid_a$_$0", "vid_b$_$1"]
    assert list(loaded["raw_text"]) == ["a b c", "ünïcödé"]
    assert list(loaded["unicode"]) == ["x", "yz"]
    assert loaded["scalar"] == np.float32(1.5)
    assert loaded["nested"] == [1, (2.0, "s"), {"k": None}]


def test_numpy2_module_spelling_loads(tmp_path):
    # numpy >= 2 writes numpy._core.multiarray; the reader must map it to the installed numpy.
    raw = pickle.dumps(np.array([1.0, 2.0], dtype=np.float32), protocol=2)
    raw = raw.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
    assert b"numpy._core.multiarray" in raw
    path = tmp_path / "np2.pkl"
    path.write_bytes(raw)
    np.testing.assert_array_equal(safe_load(path), np.array([1.0, 2.0], dtype=np.float32))


def test_allow_list_is_exact():
    assert is_allowed("numpy.core.multiarray", "_reconstruct")
    assert is_allowed("numpy._core.multiarray", "scalar")
    assert not is_allowed("numpy.core.multiarray", "system")
    assert not is_allowed("numpy", "load")  # numpy.load(allow_pickle=...) would be a way back in
    assert not is_allowed("numpy.core.multiarray.evil", "_reconstruct")
    assert not is_allowed("builtins", "getattr")


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "garbage.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="garbage.pkl"):
        safe_load(path)


def test_protocol2_empty_bytes_loads_and_bytes_with_arguments_is_refused(tmp_path):
    # Python 3 writes the buffer of an empty array under protocol 2 as builtins.bytes() (UR-FUNNY and
    # MUStARD pickles use protocol 2); nothing else may reach bytes().
    path = tmp_path / "empty.pkl"
    path.write_bytes(pickle.dumps({"x": np.zeros((0, 81), dtype=np.float64)}, protocol=2))
    assert b"bytes" in path.read_bytes()
    assert safe_load(path)["x"].shape == (0, 81)
    path.write_bytes(b"c__builtin__\nbytes\n(I1000\ntR.")  # protocol 0: bytes(1000)
    with pytest.raises(UnsafePickleError, match=r"bytes\(1000,\) refused"):
        safe_load(path)
    assert is_allowed("builtins", "bytes") and not is_allowed("builtins", "bytearray")
