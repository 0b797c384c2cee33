"""Torch state dicts read without torch: both of torch's formats, written by real torch
(`tests/data/tiny_state_*.pth`: a transposed float32 tensor, a 0-d int64, float16), and a
file that asks the unpickler for anything but tensors is refused before it runs."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from models.pretrained.torch_state import TorchFileError, load_state_dict

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_both_formats_give_the_tensors_torch_saved(fmt: str) -> None:
    state = load_state_dict(DATA / f"tiny_state_{fmt}.pth")
    assert list(state) == ["w", "n", "h"]
    np.testing.assert_array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    assert state["w"].dtype == np.float32 and state["w"].flags.c_contiguous
    assert state["n"].shape == () and state["n"] == 7 and state["n"].dtype == np.int64
    np.testing.assert_array_equal(state["h"], np.array([1.5, -2], dtype=np.float16))


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo owned > /dev/null",))


def test_a_file_that_asks_for_code_is_refused(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(TorchFileError, match=r"refusing posix\.system"):
        load_state_dict(legacy)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Boom()}))
    (tmp_path / "zip.pth").write_bytes(buf.getvalue())
    with pytest.raises(TorchFileError, match=r"refusing posix\.system"):
        load_state_dict(tmp_path / "zip.pth")


def test_what_is_not_a_torch_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(pickle.dumps(12345))
    with pytest.raises(TorchFileError, match="bad magic"):
        load_state_dict(tmp_path / "x.pth")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    (tmp_path / "y.pth").write_bytes(buf.getvalue())
    with pytest.raises(TorchFileError, match=r"without data\.pkl"):
        load_state_dict(tmp_path / "y.pth")


def test_a_file_cut_short_says_so(tmp_path: Path) -> None:
    raw = (DATA / "tiny_state_legacy.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) - 7])
    with pytest.raises(TorchFileError, match="damaged or cut short"):
        load_state_dict(tmp_path / "cut.pth")


def test_values_that_are_not_tensors_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": collections.OrderedDict}))
    (tmp_path / "odd.pth").write_bytes(buf.getvalue())
    with pytest.raises(TorchFileError, match="w are not tensors"):
        load_state_dict(tmp_path / "odd.pth")
