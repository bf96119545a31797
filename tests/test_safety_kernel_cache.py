"""The native kernel cache loads only libraries no other user could have planted or swapped."""

import logging
import os
import tempfile
import time

import pytest

from bpsn_ext.kernels import cpu_native

FAKE_CXX = """#!/bin/sh
if [ "$1" = "--version" ]; then echo fake-cxx 1.0; exit 0; fi
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then echo built-by-us > "$2"; fi
  shift
done
"""


@pytest.fixture
def cxx(tmp_path, monkeypatch):
    """A stand-in compiler (writes a marker file) and a private system temporary folder."""
    path = tmp_path / "fake-cxx"
    path.write_text(FAKE_CXX)
    path.chmod(0o755)
    tmp = tmp_path / "systmp"
    tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return str(path)


def built(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return f.read() == "built-by-us\n"


def plant(folder, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_text("planted\n")
    return str(target)


def test_a_private_cache_is_used_and_reused(cxx, tmp_path):
    cache = tmp_path / "cache"
    first = cpu_native.compile_library(cxx, str(cache))
    assert os.path.dirname(first) == str(cache) and built(first)
    assert oct(os.stat(cache).st_mode & 0o777) == "0o700"
    os.utime(first, (1, 1))
    assert cpu_native.compile_library(cxx, str(cache)) == first
    assert os.stat(first).st_mtime == 1  # taken from the cache, not rebuilt


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_folder_other_users_can_write_is_refused(cxx, tmp_path, caplog, mode):
    name = os.path.basename(cpu_native.compile_library(cxx, str(tmp_path / "probe")))
    shared = tmp_path / "shared"
    planted = plant(shared, name)
    shared.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="bpsn_ext"):
        path = cpu_native.compile_library(cxx, str(shared))
    assert path != planted and built(path)
    assert path == os.path.join(cpu_native._private_dir(), name)
    assert any("writable by group or others" in r.getMessage() for r in caplog.records)


def test_a_loose_folder_above_the_cache_is_refused(cxx, tmp_path, caplog):
    name = os.path.basename(cpu_native.compile_library(cxx, str(tmp_path / "probe")))
    above = tmp_path / "above"
    planted = plant(above / "cache", name)
    above.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="bpsn_ext"):
        path = cpu_native.compile_library(cxx, str(above / "cache"))
    assert path != planted and built(path)
    assert any("can be changed by other users" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_a_file_of_another_user_is_refused(cxx, tmp_path, caplog):
    name = os.path.basename(cpu_native.compile_library(cxx, str(tmp_path / "probe")))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    planted = plant(cache, name)
    os.chown(planted, 4242, 4242)
    with caplog.at_level(logging.WARNING, logger="bpsn_ext"):
        path = cpu_native.compile_library(cxx, str(cache))
    assert path != planted and built(path)
    assert any("owned by uid 4242" in r.getMessage() for r in caplog.records)


def test_a_group_writable_file_is_refused(cxx, tmp_path):
    name = os.path.basename(cpu_native.compile_library(cxx, str(tmp_path / "probe")))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    planted = plant(cache, name)
    os.chmod(planted, 0o775)
    path = cpu_native.compile_library(cxx, str(cache))
    assert path != planted and built(path)


def test_leftovers_of_killed_builds_are_removed(cxx, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    old, fresh = cache / ".tmp-bpsn_cpu-old.so", cache / ".tmp-bpsn_cpu-fresh.so"
    old.write_text("half")
    fresh.write_text("half")  # a concurrent build still running
    os.utime(old, (time.time() - 3600,) * 2)
    cpu_native.compile_library(cxx, str(cache))
    assert not old.exists() and fresh.exists()


def test_an_unusable_cache_does_not_leave_a_folder_per_process(cxx, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    first = cpu_native.compile_library(cxx, str(blocker / "cache"))
    assert first == cpu_native.compile_library(cxx, str(blocker / "cache"))
    assert os.path.dirname(first) == cpu_native._private_dir()
    assert sorted(os.listdir(tempfile.gettempdir())) == [f"bpsn_ext-{os.geteuid()}"]
    os.chmod(os.path.dirname(cpu_native._private_dir()), 0o777)  # fallback unusable too
    removed = []
    monkeypatch.setattr(cpu_native.atexit, "register", lambda fn, *a: removed.append(a[0]))
    scratch = cpu_native.compile_library(cxx, str(blocker / "cache"))
    assert built(scratch) and removed == [os.path.dirname(scratch)]  # removed at exit


def test_leftovers_are_removed_when_the_library_is_cached(cxx, tmp_path):
    cache = tmp_path / "cache"
    first = cpu_native.compile_library(cxx, str(cache))
    old, fresh = cache / ".tmp-bpsn_cpu-killed.so", cache / ".tmp-bpsn_cpu-live.so"
    for path in (old, fresh):
        path.write_text("half")
    os.utime(old, (time.time() - 3600,) * 2)
    assert cpu_native.compile_library(cxx, str(cache)) == first  # cached: no build
    assert not old.exists() and fresh.exists()


def test_an_interrupted_build_leaves_no_temporary_file(cxx, tmp_path, monkeypatch):
    real_run = cpu_native.subprocess.run

    def run(cmd, **kwargs):
        if "-o" in cmd:
            raise KeyboardInterrupt  # Ctrl-C while the compiler runs
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(cpu_native.subprocess, "run", run)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        cpu_native.compile_library(cxx, str(cache))
    assert os.listdir(cache) == []


def owned_by(uid: int, real, paths: set[str]):
    """``os.stat``/``os.lstat`` that report ``uid`` as the owner of ``paths``."""

    def fake(path, *args, **kwargs):
        st = real(path, *args, **kwargs)
        if os.fspath(path) not in paths:
            return st
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, uid, *st[5:10]))

    return fake


def use_fallback(tmp_path, monkeypatch) -> tuple[str, list]:
    """A configured cache that cannot be a folder (so the fallback is tried) and the folders a
    scratch build would remove at exit."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    removed = []
    monkeypatch.setattr(cpu_native.atexit, "register", lambda fn, *a: removed.append(a[0]))
    return str(blocker / "cache"), removed


def test_a_symlink_of_another_user_in_place_of_the_fallback_is_refused(
    cxx, tmp_path, monkeypatch, caplog
):
    configured, removed = use_fallback(tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = os.path.dirname(cpu_native._private_dir())
    os.symlink(elsewhere, link)  # planted where the fallback folder goes
    monkeypatch.setattr(os, "lstat", owned_by(4242, os.lstat, {link}))
    with caplog.at_level(logging.WARNING, logger="bpsn_ext"):
        path = cpu_native.compile_library(cxx, configured)
    assert built(path) and removed == [os.path.dirname(path)]  # a private scratch folder
    assert not os.path.exists(elsewhere / "cpu_kernels" / os.path.basename(path))
    assert any(f"{link} is a symbolic link of uid 4242" in r.getMessage() for r in caplog.records)


def test_a_fallback_folder_of_another_user_is_refused(cxx, tmp_path, monkeypatch, caplog):
    configured, removed = use_fallback(tmp_path, monkeypatch)
    fallback = cpu_native._private_dir()
    os.makedirs(fallback, mode=0o700)
    monkeypatch.setattr(os, "stat", owned_by(4242, os.stat, {fallback}))
    with caplog.at_level(logging.WARNING, logger="bpsn_ext"):
        path = cpu_native.compile_library(cxx, configured)
    assert built(path) and removed == [os.path.dirname(path)]
    assert os.listdir(fallback) == []
    assert any(f"{fallback} is owned by uid 4242" in r.getMessage() for r in caplog.records)
