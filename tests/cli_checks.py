"""Checks shared by the tests of the command line's error contract (one line, exit code 2)."""

from text2token.cli import main


def fails(argv, capsys, message):
    """Exit code 2 and exactly one line, the last on stderr, naming ``message``; no traceback."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("text2token: error:")]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err[-2000:]
    assert message in lines[0], lines[0]
    return lines[0]


def snapshot(folder):
    """Every file below ``folder`` with its bytes (to assert that nothing changed)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refuse_writes_under(monkeypatch, folder, error=None):
    """Make the writability probe fail in ``folder`` and below (chmod does not stop root, who runs the tests)."""
    import errno

    from text2token import files

    error = error or PermissionError(errno.EACCES, "Permission denied")
    real = files.probe_writable

    def probe(where):
        if str(where).startswith(str(folder)):
            raise error
        return real(where)

    monkeypatch.setattr(files, "probe_writable", probe)
