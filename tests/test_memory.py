"""release_memory gives freed heap pages back to the operating system (glibc's malloc_trim)."""

import pytest

from text2token.memory import _malloc_trim, find_jemalloc, release_memory, rss_bytes


@pytest.mark.skipif(_malloc_trim() is None or rss_bytes() is None, reason="needs Linux with glibc")
def test_freed_heap_in_holes_is_returned_to_the_os():
    # 100 KB blocks stay below glibc's mmap threshold, so they live on the heap; keeping every 20th
    # leaves holes that free() alone does not give back
    blocks = [bytearray(100_000) for _ in range(3000)]
    for i, b in enumerate(blocks):
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    kept = blocks[::20]
    del blocks
    before = rss_bytes()
    assert release_memory() is True
    after = rss_bytes()
    assert before - after > 100 * 2**20, (before, after)
    assert len(kept) == 150


# ---------------------------------------------------------------- the text2token command's allocator
def _env(tmp_path, **extra):
    library = tmp_path / "libjemalloc.so.2"
    library.write_bytes(b"")
    return str(library), {"TEXT2TOKEN_ALLOCATOR": "auto", **extra}  # auto: opt-in since the eighth session


def test_allocator_env_preloads_jemalloc_where_it_is_installed(tmp_path):
    from text2token.memory import ACTIVE_VAR, JEMALLOC_CONF, allocator_env

    library, environ = _env(tmp_path, LD_PRELOAD="/opt/other.so", PATH="/bin")
    env = allocator_env(environ, platform="linux", find=lambda: library)
    assert env["LD_PRELOAD"] == f"{library}:/opt/other.so" and env[ACTIVE_VAR] == library
    assert env["MALLOC_CONF"] == JEMALLOC_CONF and env["PATH"] == "/bin"
    assert "LD_PRELOAD" in environ and environ["LD_PRELOAD"] == "/opt/other.so"  # the caller's dict is not changed
    # a user's MALLOC_CONF is kept; an explicit path needs no search
    env = allocator_env({"MALLOC_CONF": "narenas:1", "TEXT2TOKEN_ALLOCATOR": library}, platform="linux",
                        find=lambda: None)
    assert env["MALLOC_CONF"] == "narenas:1" and env["LD_PRELOAD"] == library


def test_allocator_env_runs_as_is_when_told_or_when_there_is_nothing_to_do(tmp_path):
    from text2token.memory import ACTIVE_VAR, allocator_env

    library, _ = _env(tmp_path)
    found = lambda: library  # noqa: E731
    assert allocator_env({"TEXT2TOKEN_ALLOCATOR": "system"}, platform="linux", find=found) is None
    assert allocator_env({}, platform="darwin", find=found) is None
    assert allocator_env({ACTIVE_VAR: library}, platform="linux", find=found) is None  # no second re-exec
    assert allocator_env({"LD_PRELOAD": "/x/libjemalloc.so.2"}, platform="linux", find=found) is None
    assert allocator_env({}, platform="linux", find=lambda: None) is None  # auto, none installed: as is


def test_allocator_env_refuses_a_bad_choice_or_a_missing_library(tmp_path):
    from text2token.errors import ConfigError
    from text2token.memory import allocator_env

    with pytest.raises(ConfigError, match="auto, system, jemalloc"):
        allocator_env({"TEXT2TOKEN_ALLOCATOR": "tcmalloc"}, platform="linux", find=lambda: None)
    with pytest.raises(ConfigError, match="no jemalloc library found"):
        allocator_env({"TEXT2TOKEN_ALLOCATOR": "jemalloc"}, platform="linux", find=lambda: None)
    with pytest.raises(ConfigError, match="at /nowhere/libjemalloc.so.2"):
        allocator_env({"TEXT2TOKEN_ALLOCATOR": "/nowhere/libjemalloc.so.2"}, platform="linux", find=lambda: None)


def test_find_jemalloc_looks_in_the_given_places(tmp_path):
    assert find_jemalloc([str(tmp_path)]) is None
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert find_jemalloc([str(tmp_path / "missing"), str(tmp_path)]) == str(tmp_path / "libjemalloc.so.2")


def test_the_cli_reexecutes_only_for_the_command_line_and_heavy_commands(monkeypatch, tmp_path):
    from text2token import cli, memory

    calls = []
    monkeypatch.setattr(memory, "reexec_with_jemalloc", lambda: calls.append(list(cli.sys.argv)))
    monkeypatch.setattr(cli.sys, "argv", ["text2token", "encode", "--help"])
    cli.main(["encode", str(tmp_path / "no-model"), "--input", str(tmp_path / "none.txt"),
              "--output", str(tmp_path / "o.npy")])  # a call from Python: never re-executed
    assert calls == []
    monkeypatch.setattr(cli.sys, "argv", ["text2token", "encode", str(tmp_path / "no-model"), "--input",
                                          str(tmp_path / "none.txt"), "--output", str(tmp_path / "o.npy")])
    cli.main()  # the command line: re-executed first (here a stub), then it fails on the missing input as usual
    assert calls == [cli.sys.argv]
    assert "encode" in cli.HEAVY_COMMANDS and "export" not in cli.HEAVY_COMMANDS


@pytest.mark.skipif(find_jemalloc() is None, reason="no libjemalloc.so.2 installed here (Debian: libjemalloc2)")
def test_a_reexecuted_script_runs_on_jemalloc_and_can_purge_it(tmp_path):
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text("import json, os, sys\n"
                      "from text2token.memory import reexec_with_jemalloc, release_memory, allocator_line\n"
                      "reexec_with_jemalloc()\n"
                      "print(json.dumps({'preload': os.environ.get('LD_PRELOAD', ''), 'purged': release_memory(),\n"
                      "                  'line': allocator_line()}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TEXT2TOKEN_ALLOCATOR_ACTIVE",
                                                            "TEXT2TOKEN_ALLOCATOR")}
    env["TEXT2TOKEN_ALLOCATOR"] = "auto"  # opt-in: the default is the C library's allocator
    out = json.loads(subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
    assert "libjemalloc" in out["preload"] and out["purged"] is True and out["line"].startswith("allocator: jemalloc")
    # the interpreter's own command line is what runs again: ``python -c`` (and ``-m``, as launchers use) too
    out = json.loads(subprocess.run([sys.executable, "-c", script.read_text()], env=env, capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1])
    assert "libjemalloc" in out["preload"] and out["purged"] is True
    for choice in ("system", None):  # None: the default
        if choice is None:
            env.pop("TEXT2TOKEN_ALLOCATOR")
        else:
            env["TEXT2TOKEN_ALLOCATOR"] = choice
        out = json.loads(subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                                        check=True).stdout.strip().splitlines()[-1])
        assert "jemalloc" not in out["preload"] and out["line"] is None
