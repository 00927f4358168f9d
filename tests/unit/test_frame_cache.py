"""The on-disk frame/mask cache: atomic writes (a killed writer leaves nothing readable), hits by content hash,
least-recently-used eviction, and arrays read back one at a time."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

from models.frame_cache import TMP_PREFIX, CachedArrays, FrameCache, array_hash, write_atomically
from training.synthetic import make_frames


def test_a_frame_is_decoded_once_and_found_again_by_its_content_hash(tmp_path, monkeypatch):
    cache = FrameCache(tmp_path)
    jpeg, other = (frame.jpeg() for frame in make_frames(2, 160, 90, seed=1))
    decoded = []
    import models.frame_cache as frame_cache

    def counting_decode(data, size, max_pixels):
        decoded.append(data)
        return real_decode(data, size, max_pixels)

    real_decode = frame_cache.decode_image
    monkeypatch.setattr(frame_cache, "decode_image", counting_decode)
    first = cache.frame(jpeg, (64, 32), 10**7)
    again = cache.frame(bytes(jpeg), (64, 32), 10**7)  # equal bytes from another download: the same entry
    assert first == again and len(decoded) == 1
    assert np.load(first).shape == (32, 64, 3) and np.load(first).dtype == np.uint8
    assert cache.frame(other, (64, 32), 10**7) != first, "other content, other entry"
    assert cache.frame(jpeg, (32, 32), 10**7) != first, "another size, another entry"
    assert len(decoded) == 3


def test_masks_are_keyed_by_their_content_and_resized_without_inventing_classes(tmp_path):
    cache = FrameCache(tmp_path)
    mask = np.zeros((90, 160), np.uint8)
    mask[10:50, 20:80] = 3
    path = cache.mask(mask, (80, 45))
    assert cache.mask(mask.copy(), (80, 45)) == path
    assert set(np.unique(np.load(path))) == {0, 3}
    changed = mask.copy()
    changed[0, 0] = 1
    assert cache.mask(changed, (80, 45)) != path
    assert array_hash(mask) != array_hash(mask.astype(np.int64)), "dtype is part of the key"


def test_a_write_that_fails_midway_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "ab" / "abcdef.npy"

    def failing_save(out, array, allow_pickle):
        out.write(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, np.ones((4, 4), np.uint8))
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_a_writer_killed_before_the_rename_leaves_no_readable_entry_and_sweep_removes_its_temporary(tmp_path):
    """A real process dies (os._exit) after writing its bytes, before the rename."""
    cache = FrameCache(tmp_path)
    key = "ab" * 32
    script = (
        "import os, numpy as np\n"
        "from models.frame_cache import FrameCache\n"
        "os.fsync = lambda fd: os._exit(9)\n"
        f"FrameCache({str(tmp_path)!r}).put('frame', (8, 8), {key!r}, np.ones((8, 8, 3), np.uint8))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd(), timeout=120)
    assert done.returncode == 9
    assert cache.get("frame", (8, 8), key) is None and not cache.path("frame", (8, 8), key).exists()
    leftovers = list(tmp_path.glob(f"*/*/{TMP_PREFIX}*"))
    assert len(leftovers) == 1 and list(cache.files()) == []
    assert cache.sweep(older_than=3600) == 0, "a recent temporary may belong to a writer still running"
    assert cache.sweep(older_than=0) == 1 and not leftovers[0].exists()
    path, hit = cache.get_or_put("frame", (8, 8), key, lambda: np.ones((8, 8, 3), np.uint8))
    assert not hit and np.load(path).sum() == 8 * 8 * 3


def test_a_corrupt_entry_is_dropped_and_made_again(tmp_path):
    cache = FrameCache(tmp_path)
    path = cache.put("frame", (4, 4), "cd" * 32, np.zeros((4, 4, 3), np.uint8))
    path.write_bytes(b"not an npy file")
    assert cache.get("frame", (4, 4), "cd" * 32) is None and not path.exists()


def test_eviction_removes_the_least_recently_used_files_first_and_spares_the_run_in_progress(tmp_path):
    cache = FrameCache(tmp_path)
    paths = []
    for i in range(4):
        paths.append(cache.put("frame", (16, 16), f"{i:02d}" * 32, np.full((16, 16, 3), i, np.uint8)))
        os.utime(paths[-1], (time.time() - 100 + i, time.time() - 100 + i))
    one = paths[0].stat().st_size
    cache.get_or_put("frame", (16, 16), "00" * 32, lambda: pytest.fail("a hit decodes nothing"))  # used again
    removed = cache.evict(max_bytes=2 * one, keep={paths[1]})
    assert removed == 2
    assert [p.exists() for p in paths] == [True, True, False, False]
    assert cache.size_bytes() == 2 * one


def test_cached_arrays_read_one_frame_or_a_slice_and_pickle_as_paths(tmp_path):
    cache = FrameCache(tmp_path)
    paths = [cache.put("frame", (4, 4), f"{i:02d}" * 32, np.full((4, 4, 3), i, np.uint8)) for i in range(5)]
    frames = CachedArrays(paths)
    assert len(frames) == 5 and frames[3][0, 0, 0] == 3
    assert [f[0, 0, 0] for f in frames[1:4]] == [1, 2, 3]
    assert len(pickle.dumps(frames)) < 2000, "workers receive paths, not pixels"
    with pytest.raises(ValueError, match="content hash"):
        cache.path("frame", (4, 4), "../../etc")
