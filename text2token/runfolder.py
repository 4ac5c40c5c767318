"""The run folder: the one owner of its on-disk format.

A training run writes one folder (the project's equivalent of sentence-transformers' ``modules.json``)::

    RUN/train_config.json        the TrainConfig (what --resume reads), written first
    RUN/started.json             the working folder the run was started in (relative model and data paths
                                 are resolved against it on --resume) and the backbone's weights
                                 fingerprint (--resume refuses weights that changed since)
    RUN/stage1/checkpoints/      Trainer checkpoints (adapter only, optimizer, RNG state), each with
                                 text2token_complete.json (sizes and sha256 of its files) written last
    RUN/stage1/adapter/          the finished stage-1 adapter (with its own text2token_complete.json)
    RUN/stage1/log.jsonl         loss and its terms, learning rate, grad norm per logging step
    RUN/stage1/summary.json      the finished stage's texts, steps, losses, seconds (kept across a resume)
    RUN/stage2/targets.pt        background and sparse teacher targets (computed once)
    RUN/stage2/...               as stage 1
    RUN/text2token_config.json   the run record, written last: backbone, pooling, attention, adapters,
                                 hyper-parameters, and the sha256 of the files loading needs

``objective: simcse`` runs have one stage folder, ``RUN/simcse/``. While a process writes the folder
it holds the lock file ``.RUN.lock`` next to it (pid and host; see :class:`text2token.files.WriterLock`).

Everything that knows these names goes through :class:`RunFolder` and the checkpoint helpers here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

from .errors import ConfigError, DiskFullError, RunFolderError
from .files import WriterLock, atomic_write_text, check_writable, fsync_tree, os_cause, sha256_file

log = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.json"
START_FILE = "started.json"  # working folder and backbone fingerprint at the start
PATH_FIELDS = ("model", "data", "stage1_data", "stage2_data")  # TrainConfig fields that may name local paths
RUN_CONFIG = "text2token_config.json"  # the run record
# Options whose default does something other than what runs before the option existed did: a saved
# configuration without the key gets this value (a resumed old run goes on as it started).
SETTINGS_BEFORE_THEY_EXISTED = {"length_groups": 1}
STAGE_DIRS = {"data": "stage1", "model": "stage2", "simcse": "simcse"}
STAGE_SUMMARY = "summary.json"
STAGE_LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
ADAPTER_DIR = "adapter"
TARGETS_FILE = "targets.pt"
FORMAT_VERSION = 1
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_FILE)
# written last into a checkpoint (and a finished adapter folder), once all its files are on disk:
# their sizes and sha256. A checkpoint folder without it (killed or out of disk space while saving)
# is never resumed from, and is removed.
COMPLETE_FILE = "text2token_complete.json"
CHECKPOINT_FILES = (ADAPTER_FILE, "trainer_state.json")
# top-level entries a run folder may hold besides its own files: what `eval --output`, the demo's
# plot and logs leave there. Anything else (a corpus, a model folder) is not ours to delete.
OWN_SUFFIXES = (".json", ".png", ".log", ".md")


_WARNED: set = set()  # (run, backbone, change) already warned about in this process


def _shown(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


# ------------------------------------------------------------------ manifests (completeness)
def mark_complete(folder: Path, step: int | None = None, required=CHECKPOINT_FILES) -> dict:
    """Flush a folder's files to disk, then write :data:`COMPLETE_FILE` (atomically) with their sizes
    and sha256. Returns ``{relative path: {"bytes", "sha256"}}``."""
    folder = Path(folder)
    (folder / COMPLETE_FILE).unlink(missing_ok=True)
    sizes = fsync_tree(folder)
    missing = [name for name in required if name not in sizes]
    if missing:
        raise RunFolderError(f"{'checkpoint' if step is not None else 'folder'} {folder} lacks "
                             f"{', '.join(missing)} after saving")
    sha = {name: sha256_file(folder / name) for name in sizes}
    record = {"files": sizes, "sha256": sha}
    if step is not None:
        record = {"step": step, **record}
    atomic_write_text(folder / COMPLETE_FILE, json.dumps(record, indent=1))
    return {name: {"bytes": sizes[name], "sha256": sha[name]} for name in sizes}


def _manifest(folder: Path) -> dict | None:
    try:
        record = json.loads((Path(folder) / COMPLETE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("files"), dict) else None


def is_complete(folder: Path, required=CHECKPOINT_FILES) -> bool:
    """Whether a folder was completely written: its marker, and every file it lists at its size."""
    record = _manifest(folder)
    if record is None:
        return False
    files = record["files"]
    try:
        return (all(name in files for name in required)
                and all((Path(folder) / name).stat().st_size == size for name, size in files.items()))
    except (OSError, TypeError, ValueError):
        return False


def damaged_files(folder: Path, required=CHECKPOINT_FILES) -> list[str]:
    """Files of a complete folder whose content differs from the sha256 its marker lists (missing
    ones included); ``[]`` when all verify or the marker predates checksums. An incomplete folder
    gives its marker's name."""
    if not is_complete(folder, required):
        return [COMPLETE_FILE]
    sha = (_manifest(folder) or {}).get("sha256")
    if not isinstance(sha, dict):
        return []
    bad = []
    for name, digest in sha.items():
        try:
            if sha256_file(Path(folder) / name) != digest:
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``checkpoint-N`` folder, complete or not, oldest first."""
    found = []
    for path in Path(folder).glob("checkpoint-*") if Path(folder).is_dir() else []:
        try:
            found.append((int(path.name.split("-", 1)[1]), path))
        except ValueError:
            continue
    return sorted(found)


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint (see :func:`is_complete`), oldest first."""
    return [(step, path) for step, path in _checkpoints(folder) if is_complete(path)]


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (see :func:`is_complete`), if any; partial ones are ignored."""
    done = complete_checkpoints(folder)
    return done[-1][1] if done else None


def last_verified_checkpoint(folder: Path, remove_damaged: bool = False) -> Path | None:
    """The newest complete checkpoint whose files match their checksums; damaged newer ones are
    named in a warning (and deleted with ``remove_damaged``)."""
    for _, path in reversed(complete_checkpoints(folder)):
        bad = damaged_files(path)
        if not bad:
            return path
        log.warning("checkpoint %s is damaged (%s differ from their checksums): %s", path, ", ".join(bad),
                    "removed, resuming from an older one" if remove_damaged else "skipped")
        if remove_damaged:
            (path / COMPLETE_FILE).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
    return None


def remove_incomplete_checkpoints(folder: Path) -> None:
    """Delete checkpoint folders a crash or a full disk left half-written (main process only)."""
    for _, path in _checkpoints(folder):
        if not is_complete(path):
            shutil.rmtree(path, ignore_errors=True)


def remove_old_checkpoints(folder: Path, keep: int | None) -> None:
    """Keep the ``keep`` newest complete checkpoints (``None``/0: all); the marker goes first."""
    if not keep or keep <= 0:
        return
    done = [path for _, path in _checkpoints(folder) if is_complete(path)]
    for path in done[:-keep]:
        (path / COMPLETE_FILE).unlink(missing_ok=True)
        shutil.rmtree(path, ignore_errors=True)


def kept_checkpoint_note(folder) -> str:
    """One sentence for error messages: which checkpoint a resume would start from."""
    checkpoint = last_checkpoint(Path(folder))
    run = Path(folder).parent.parent
    if checkpoint is None:
        return f"No checkpoint of this stage is complete yet; `text2token train --resume {run}` restarts it."
    return f"The last complete checkpoint, {checkpoint}, is kept: continue with `text2token train --resume {run}`."


# ------------------------------------------------------------------ inputs
def local_path(name) -> Path | None:
    """``name`` as a local path if it exists (a hub id or dataset name gives ``None``)."""
    if not name:
        return None
    path = Path(str(name)).expanduser()
    return path if path.exists() else None


def backbone_reference(name: str | None) -> str:
    """What a later ``load`` needs: local paths made absolute, hub ids and the default as given."""
    from .backbone import DEFAULT_BACKBONE

    if name is None:
        return DEFAULT_BACKBONE
    path = local_path(name)
    return str(path.resolve()) if path is not None else name


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_not_inside(output: Path, inputs: dict[str, list], hint: str = "choose another --output") -> None:
    """Refuse an output folder that is, or holds, one of the inputs (``{"corpus": [paths], ...}``)."""
    for what, names in inputs.items():
        for name in names:
            path = local_path(name)
            if path is not None and _inside(path, output):
                raise RunFolderError(f"{output} holds the {what} of this run ({path}): the output folder "
                                     f"must not contain its inputs; {hint}")


# ------------------------------------------------------------------ writing
@contextlib.contextmanager
def writing(path):
    """Turn a failed write under a run folder into one line naming the path and the cause (a full disk
    stays a :class:`~text2token.errors.DiskFullError`)."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        where = exc.filename if getattr(exc, "filename", None) else path
        raise RunFolderError(f"cannot write {where} ({os_cause(exc)}): make the folder writable or choose "
                             "another --output") from exc


def trim_log(path: Path, last_step: int) -> int:
    """Rewrite a stage's ``log.jsonl`` (atomically) without the records after ``last_step`` (the step of
    the checkpoint a resume starts from; 0 when the stage restarts), and without a line a crash cut:
    the resumed run logs those steps again, so none appears twice. Returns how many lines were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    with writing(path):
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
                step = int(record["step"])
            except (ValueError, TypeError, KeyError):
                continue
            if step <= last_step:
                kept.append(line)
        dropped = len(lines) - len(kept)
        if dropped:
            atomic_write_text(path, "".join(line + "\n" for line in kept))
            log.info("%s: %d record(s) after step %d dropped (they are logged again)", path, dropped, last_step)
    return dropped


# ------------------------------------------------------------------ the folder
class RunFolder:
    """A run folder on disk: its files, stages, checkpoints, lock, record and loading."""

    def __init__(self, path):
        if isinstance(path, RunFolder):
            path = path.path
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # paths
    @property
    def train_config_file(self) -> Path:
        return self.path / TRAIN_CONFIG

    @property
    def record_file(self) -> Path:
        return self.path / RUN_CONFIG

    @property
    def start_file(self) -> Path:
        return self.path / START_FILE

    @property
    def lock_file(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock"

    @staticmethod
    def stage_folder_name(stage: str) -> str:
        return STAGE_DIRS.get(stage, stage)

    def stage_dir(self, stage: str) -> Path:
        return self.path / self.stage_folder_name(stage)

    def adapter_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / ADAPTER_DIR

    def checkpoints_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / CHECKPOINTS

    def log_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / STAGE_LOG

    def summary_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / STAGE_SUMMARY

    def targets_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / TARGETS_FILE

    # what it is
    def is_finished(self) -> bool:
        """Holds a run record (``text2token.load`` opens it)."""
        return self.record_file.is_file()

    def is_started(self) -> bool:
        """Holds the saved TrainConfig (``--resume`` continues it)."""
        return self.train_config_file.is_file()

    def foreign_entries(self) -> list[str]:
        """Top-level entries this project did not write (see :data:`OWN_SUFFIXES`), sorted."""
        own = {TRAIN_CONFIG, RUN_CONFIG, *STAGE_DIRS.values()}
        out = []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            name = entry.name
            if name in own and (entry.is_dir() == (name in STAGE_DIRS.values())):
                continue
            if name.startswith(".") and name.endswith(".tmp"):  # an atomic write a crash left behind
                continue
            if entry.is_file() and not entry.is_symlink() and entry.suffix.lower() in OWN_SUFFIXES:
                continue
            out.append(name + ("/" if entry.is_dir() else ""))
        return out

    # the TrainConfig
    def read_train_config(self) -> dict:
        """The saved TrainConfig of a run folder, as a dict (a damaged file is one clear error)."""
        file = self.train_config_file
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"cannot read {file}: {exc}") from exc
        if not isinstance(values, dict):
            raise RunFolderError(f"{file} does not hold a configuration")
        for key, value in SETTINGS_BEFORE_THEY_EXISTED.items():  # what an older run did, not today's default
            values.setdefault(key, value)
        return values

    def write_train_config(self, values: dict) -> None:
        with writing(self.train_config_file):
            atomic_write_text(self.train_config_file, json.dumps(values, indent=2))

    # where and on what the run started
    def write_start(self, config) -> dict:
        """Record the working folder and the backbone's weights fingerprint (:data:`START_FILE`)."""
        from .backbone import backbone_fingerprint

        info = {"working_folder": os.getcwd(), "backbone": backbone_fingerprint(config.model)}
        with writing(self.start_file):
            atomic_write_text(self.start_file, json.dumps(info, indent=1))
        return info

    def read_start(self) -> dict | None:
        """What :meth:`write_start` recorded; ``None`` for a run started before it existed (or a damaged file,
        with a warning)."""
        if not self.start_file.is_file():
            return None
        try:
            info = json.loads(self.start_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):
            log.warning("cannot read %s: relative paths and the backbone are taken as they are now", self.start_file)
            return None
        return info

    def resolve_paths(self, config):
        """``config`` with its relative local paths (model, data) taken from the working folder the run was
        started in, so ``--resume`` works from any folder. Names that are no path there (hub ids) stay."""
        import dataclasses

        start = self.read_start() or {}
        base = start.get("working_folder")
        if not isinstance(base, str) or Path(base) == Path.cwd():
            return config

        def resolved(name):
            if not isinstance(name, str) or not name or Path(name).expanduser().is_absolute():
                return name
            there = Path(base) / name
            return str(there) if there.exists() else name

        changes = {}
        for field in PATH_FIELDS:
            value = getattr(config, field, None)
            new = [resolved(v) for v in value] if isinstance(value, list) else resolved(value)
            if new != value:
                changes[field] = new
        return dataclasses.replace(config, **changes) if changes else config

    def check_backbone(self, name) -> None:
        """Refuse to go on (``--resume``) when the backbone's weights differ from those the run started with:
        a file added, gone, of another size, or with other first or last MiB. Only a changed modification
        time is a warning. A run without a recorded fingerprint, or weights not on this machine, pass."""
        change = self.backbone_change(name, (self.read_start() or {}).get("backbone"))
        if change is None:
            return
        path, changed, _ = change
        if not changed:
            log.warning("the backbone %s has new modification times since %s started, but the same sizes and "
                        "first and last MiB: taken as the same weights", path, self.path)
            return
        raise RunFolderError(f"the weights of the backbone {path} changed since {self.path} was started "
                             f"({_shown(changed)} differ): --resume would continue onto other weights; restore the "
                             "backbone it started with, or start a new run with another --output")

    @staticmethod
    def backbone_change(name, recorded) -> tuple[str, list[str], str] | None:
        """How the weights of backbone ``name`` differ from the fingerprint ``recorded`` when the run started
        (see :func:`text2token.backbone.backbone_fingerprint`): ``None`` when they are the same (or nothing was
        recorded, or the weights are not on this machine: loading them says what is wrong), else ``(path,
        changed files, what changed in words)``; no changed file means only modification times differ."""
        from .backbone import backbone_fingerprint

        if not isinstance(recorded, dict) or not isinstance(recorded.get("files"), dict):
            return None
        now = backbone_fingerprint(name)
        if now is None or not isinstance(now.get("files"), dict):
            return None
        if now.get("content") == recorded.get("content"):
            return None if now.get("digest") == recorded.get("digest") else (now["path"], [], "modification times")
        old, new = recorded["files"], now["files"]
        words = [f"{n} is gone" for n in sorted(set(old) - set(new))]
        words += [f"{n} is new" for n in sorted(set(new) - set(old))]
        for n in sorted(set(old) & set(new)):
            before, after = old[n] if isinstance(old[n], dict) else {}, new[n]
            if before.get("bytes") != after["bytes"]:
                words.append(f"{n} is {after['bytes']} bytes, was {before.get('bytes')}")
            elif before.get("edges_sha256") != after["edges_sha256"]:
                words.append(f"{n} has other content at the same size")
        changed = sorted(set(old) ^ set(new)) or sorted(
            n for n in old if [old[n].get("bytes"), old[n].get("edges_sha256")] != [new[n]["bytes"], new[n]["edges_sha256"]])
        return now["path"], changed, "; ".join(words[:3]) + (f"; and {len(words) - 3} more" if len(words) > 3 else "")

    def warn_if_backbone_changed(self, info: dict) -> None:
        """Loading a finished run: one warning (once per process and state of the weights) when its backbone's
        weights are not those it was trained on (the fingerprint in its record, else in ``started.json``).
        Loading goes on: the base model is what it is, but the adapters were trained on other weights."""
        model_info = info.get("model") if isinstance(info.get("model"), dict) else {}
        recorded = info.get("backbone_fingerprint") or (self.read_start() or {}).get("backbone")
        try:
            change = self.backbone_change(model_info.get("backbone"), recorded)
        except OSError:  # weights that cannot be read: loading them says so
            return
        if change is None or not change[1]:
            return
        path, _, detail = change
        key = (str(self.path.resolve()), path, detail)
        if key in _WARNED:
            return
        _WARNED.add(key)
        log.warning("the weights of the backbone %s changed since %s was trained (%s): its adapters were trained "
                    "on the old weights, so its embeddings are not those it was trained to give; restore the "
                    "backbone, or train again", path, self.path, detail)

    def backbone_digest(self) -> str | None:
        """The fingerprint of the run's backbone weights as they are now (part of the eval cache's key)."""
        from .backbone import backbone_fingerprint

        name = None
        try:
            record = self.read_record(check=False) if self.record_file.is_file() else None
            if isinstance(record, dict) and isinstance(record.get("model"), dict):
                name = record["model"].get("backbone")
            elif self.train_config_file.is_file():
                name = self.resolve_paths_dict(self.read_train_config()).get("model")
        except (RunFolderError, OSError, ValueError):
            return None
        if not isinstance(name, str):
            return None
        found = backbone_fingerprint(name)
        return found["digest"] if found else None

    def resolve_paths_dict(self, values: dict) -> dict:
        """As :meth:`resolve_paths`, for the saved TrainConfig as a dict (its ``model`` only)."""
        start = self.read_start() or {}
        base, model = start.get("working_folder"), values.get("model")
        if isinstance(base, str) and isinstance(model, str) and not Path(model).is_absolute() \
                and (Path(base) / model).exists():
            return {**values, "model": str(Path(base) / model)}
        return values

    # the record
    def read_record(self, check: bool = True) -> dict:
        """The run record; with ``check``, one clear error if it lacks what loading needs."""
        file = self.record_file
        try:
            info = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"cannot read {file}: {exc}") from exc
        if not check:
            return info
        if not isinstance(info, dict):
            raise RunFolderError(f"{file} does not hold a run record: delete it and run "
                                 f"`text2token train --resume {self.path}` to write it again")
        model_info = info.get("model")
        missing = [k for k in ("backbone", "pooling", "attention", "max_length")
                   if not isinstance(model_info, dict) or k not in model_info]
        if missing:
            raise RunFolderError(f"{file} is incomplete: no model.{', model.'.join(missing)}")
        adapters = info.get("adapters", [])
        if not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters):
            raise RunFolderError(f"{file} is damaged: its adapters are not a list of folders")
        return info

    def write_record(self, record: dict, stages: list[str]) -> dict:
        """Write the run record last, with the sha256 of the adapters' files and the TrainConfig."""
        files = {}
        for stage in stages:
            folder = self.adapter_dir(stage)
            for name in ADAPTER_FILES:
                if (folder / name).is_file():
                    rel = (folder / name).relative_to(self.path).as_posix()
                    files[rel] = {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        if self.train_config_file.is_file():
            files[TRAIN_CONFIG] = {"bytes": self.train_config_file.stat().st_size,
                                   "sha256": sha256_file(self.train_config_file)}
        started = self.read_start() or {}
        if started.get("backbone"):
            record = {**record, "backbone_fingerprint": started["backbone"]}
        record = {**record, "files": files}
        with writing(self.record_file):
            atomic_write_text(self.record_file, json.dumps(record, indent=2))
        return record

    def adapters(self, info: dict | None = None) -> list[Path]:
        info = self.read_record() if info is None else info
        return [self.path / rel for rel in info.get("adapters", [])]

    def check_loadable(self) -> dict:
        """The record, once the folder is known to load: a finished run, every adapter present and whole."""
        if not self.path.is_dir():
            raise RunFolderError(f"run folder {self.path} does not exist" if not self.path.exists()
                                 else f"{self.path} is not a folder")
        if not self.record_file.is_file():
            if self.train_config_file.is_file():
                raise RunFolderError(f"{self.path} has no {RUN_CONFIG}: training did not finish; resume it with "
                                     f"`text2token train --resume {self.path}`")
            raise RunFolderError(f"{self.path} is not a text2token run folder: it has no {RUN_CONFIG}")
        info = self.read_record()
        for adapter in self.adapters(info):
            if not (adapter / ADAPTER_CONFIG).is_file():
                raise RunFolderError(f"run folder {self.path} is incomplete: adapter {adapter} is missing")
        self.verify(info)
        self.warn_if_backbone_changed(info)
        return info

    def _repair_hint(self, rel: str) -> str:
        parts = Path(rel).parts
        if len(parts) >= 2 and parts[1] == ADAPTER_DIR:
            adapter = self.path / parts[0] / ADAPTER_DIR
            return (f"restore it from a copy, or delete {adapter} and run `text2token train --resume {self.path}` "
                    "to rebuild it from the stage's last checkpoint")
        return "restore it from a copy"

    def verify(self, info: dict | None = None, include_config: bool = False) -> None:
        """Check the files the record lists against their sha256 (the adapters', and with
        ``include_config`` the TrainConfig that --resume reads); a damaged
        or missing one is one error naming it and what to do. Records without checksums pass, and so do
        the files of an adapter folder without :data:`COMPLETE_FILE` (not saved by training: assembled
        by hand from a checkpoint's files, as bench/quality.py does)."""
        info = self.read_record() if info is None else info
        files = info.get("files")
        if not isinstance(files, dict):
            return
        for rel, expected in files.items():
            if rel == TRAIN_CONFIG and not include_config:
                continue
            if not isinstance(expected, dict) or "sha256" not in expected:
                continue
            file = self.path / rel
            if file.parent.name == ADAPTER_DIR and not (file.parent / COMPLETE_FILE).is_file():
                continue
            if not file.is_file():
                raise RunFolderError(f"{file} is missing (the run record lists it): {self._repair_hint(rel)}")
            size = file.stat().st_size
            if size != expected.get("bytes", size) or sha256_file(file) != expected["sha256"]:
                raise RunFolderError(f"{file} is damaged (its content does not match the sha256 in {RUN_CONFIG}): "
                                     f"{self._repair_hint(rel)}")

    # stages
    def stage_finished(self, stage: str) -> bool:
        """Whether a stage's adapter is saved and whole (its marker's checksums, where it has one)."""
        folder = self.adapter_dir(stage)
        if not (folder / ADAPTER_CONFIG).is_file():
            return False
        if not (folder / COMPLETE_FILE).is_file():
            return any(folder.glob("adapter_model.*"))  # saved before adapters carried checksums
        bad = damaged_files(folder, ADAPTER_FILES)
        if bad:
            log.warning("the finished adapter %s is damaged (%s): training the stage again from its last checkpoint",
                        folder, ", ".join(bad))
            return False
        return True

    def save_adapter(self, peft_model, stage: str) -> None:
        """Save a stage's adapter to a temporary folder, mark it complete, then rename: never a half-written adapter."""
        from .files import atomic_path

        with writing(self.adapter_dir(stage)), atomic_path(self.adapter_dir(stage), directory=True) as tmp:
            peft_model.save_pretrained(str(tmp))
            mark_complete(tmp, required=ADAPTER_FILES)

    def read_stage_summary(self, stage: str) -> dict | None:
        file = self.summary_file(stage)
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("cannot read %s: the stage's numbers are left out of the record", file)
            return None
        return data if isinstance(data, dict) else None

    def write_stage_summary(self, stage: str, info: dict) -> None:
        with writing(self.summary_file(stage)):
            atomic_write_text(self.summary_file(stage), json.dumps(info, indent=2))

    def stages(self, info: dict | None = None) -> list[str]:
        """The run's stages (from its record, else from its TrainConfig)."""
        if info is None and self.record_file.is_file():
            info = self.read_record()
        if info is not None:
            return list(info.get("stages") or [])
        from .config import TrainConfig

        return list(TrainConfig.from_dict(self.read_train_config(), source=str(self.train_config_file)).stages)

    def checkpoints(self, stage: str) -> list[tuple[int, Path]]:
        """``(step, path)`` of the complete checkpoints of a stage, oldest first."""
        return complete_checkpoints(self.checkpoints_dir(stage))

    def read_losses(self, stages=None) -> dict[str, list[tuple[int, float]]]:
        """Loss by step of each stage (``stageN/log.jsonl``; the last record of a step wins, so a
        resumed run's repeated steps count once; a line cut by a crash is skipped)."""
        out = {}
        for stage in (self.stages() if stages is None else stages):
            file = self.log_file(stage)
            if not file.is_file():
                continue
            by_step: dict[int, float] = {}
            for line in file.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("loss"), (int, float)) and "step" in record:
                    by_step[int(record["step"])] = float(record["loss"])
            if by_step:
                out[f"{self.stage_folder_name(stage)} ({stage})"] = sorted(by_step.items())
        return out

    # writing: ownership and the lock
    @property
    def shared(self):
        """This folder as the processes of one run use it: every method runs on the main process alone and its
        answer (or exception) reaches every rank (:class:`text2token.distributed.MainOnly`), so they decide the
        same and only one writes. With one process it is the folder itself, in effect."""
        from .distributed import MainOnly

        return MainOnly(self)

    def lock(self) -> WriterLock:
        """The lock of this folder (``with run.lock(): ...``): one writing process at a time."""
        return WriterLock(self.lock_file, self.path, "written", info={"run": str(self.path.absolute())})

    def check_not_locked(self) -> None:
        """Refuse early (before heavy work) while another live process writes this folder."""
        self.lock().refuse_if_held()

    def prepare(self, config, resume: bool, overwrite: bool, check_only: bool = False) -> Path:
        """Checked (resume: it holds a run; else: it is new, empty, or a run folder to --overwrite), then made.

        ``check_only``: raise what would be refused, but create and delete nothing. ``--overwrite``
        deletes only a folder this project recognises as a run folder holding nothing else, and never
        one that holds the run's own corpus or backbone.
        """
        run = self.path
        saved = self.train_config_file
        if run.exists() and not run.is_dir():
            raise RunFolderError(f"{run} is a file, not a run folder: choose another --output")
        if resume:
            if not saved.is_file():
                raise RunFolderError(f"cannot resume {run}: it holds no {TRAIN_CONFIG}")
            self.check_writable()
            return run
        self.check_writable()
        for name in _corpus_paths(config):
            corpus = local_path(name)
            if corpus is not None and corpus.is_dir() and _inside(run, corpus):
                raise RunFolderError(f"{run} is inside the corpus folder {corpus}: the run's own files (log.jsonl) "
                                     "would be read as training texts; choose an --output outside it")
        if run.exists() and any(run.iterdir()):
            if saved.is_file() and not overwrite and self.read_train_config() == config.to_dict():
                raise RunFolderError(f"{run} already holds this run: continue it with `text2token train --resume {run}` "
                                     "or start again with --overwrite")
            if not overwrite:
                raise RunFolderError(f"{run} already exists and is not empty: choose another --output or pass --overwrite")
            check_not_inside(run, {"corpus": _corpus_paths(config), "backbone": [config.model]},
                             "choose another --output (--overwrite would delete it)")
            self._check_replaceable()
            if check_only:
                return run
            self._clear()
        if check_only:
            return run
        with writing(run):
            run.mkdir(parents=True, exist_ok=True)
        self.write_train_config(config.to_dict())
        self.write_start(config)
        return run

    def check_writable(self) -> None:
        """Before any heavy work: the folder (or where it will be made) and its parent, which holds the
        lock, take new files; else one line naming the path and the cause."""
        hint = "make it writable or choose another --output"
        check_writable(self.path, RunFolderError, directory=True, hint=hint)
        check_writable(self.lock_file, RunFolderError, hint=hint + " (the lock file goes there)")

    def _check_replaceable(self) -> None:
        run = self.path
        if not (self.train_config_file.is_file() or self.record_file.is_file()):
            names = self.foreign_entries()
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            raise RunFolderError(f"{run} is not a text2token run folder (it holds {shown}): --overwrite only replaces "
                                 "a run folder; choose another --output or empty it yourself")
        foreign = self.foreign_entries()
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise RunFolderError(f"{run} holds files a run does not write ({shown}): --overwrite would delete them; "
                                 "move them out or choose another --output")

    def _clear(self) -> None:
        """Delete the folder's content (the lock, next to it, stays)."""
        for entry in list(self.path.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # loading
    def model_info(self) -> dict:
        """The backbone, pooling, attention, max length and prompt of the run (record, else TrainConfig)."""
        from .pooling import PROMPT_EOL

        if self.record_file.is_file():
            info = dict(self.read_record()["model"])
        elif self.train_config_file.is_file():
            from .config import TrainConfig

            config = TrainConfig.from_dict(self.read_train_config(), source=str(self.train_config_file))
            info = {"backbone": backbone_reference(config.model), "pooling": config.pooling,
                    "attention": config.attention, "max_length": config.max_length, "prompt": config.prompt}
        else:
            raise RunFolderError(f"{self.path} is not a text2token run folder: it has no {RUN_CONFIG}")
        info.setdefault("prompt", PROMPT_EOL)
        return info

    def load_base(self, cls=None, pooling=None, attention=None, max_length=None, dtype=None,
                  precision: str = "fp32", name: str | None = None):
        """The run's backbone with its pooling, attention, max length and prompt, no adapter."""
        from .backbone import load_backbone
        from .model import Text2TokenModel

        cls = cls or Text2TokenModel
        info = self.model_info()
        attention = attention or info["attention"]
        model, tokenizer, _ = load_backbone(info["backbone"], attention=attention, dtype=dtype)
        model.eval()
        return cls(model, tokenizer, pooling=pooling or info["pooling"], attention=attention,
                   max_length=max_length or info["max_length"], prompt=info["prompt"],
                   name=name or f"{self.path} (base)", backbone=info["backbone"], precision=precision)

    def load(self, cls=None, pooling=None, attention=None, max_length=None, dtype=None, precision: str = "fp32",
             upto_stage: int | str | None = None, checkpoint=None, adapter_scale: float | None = None):
        """Open the run as a ``Text2TokenModel``: its backbone with the adapters merged.

        ``upto_stage``: only the first N stages' adapters (or up to and including the stage named);
        ``checkpoint``: a checkpoint folder of a stage, merged on top of the finished adapters of the
        stages before it (works for an unfinished run too). Adapters are verified against the record.
        ``adapter_scale``: weight-space interpolation toward the base (``TrainConfig.adapter_scale``);
        default: the run's own, recorded with its hyperparameters (1 for runs that predate it).
        """
        from .model import apply_adapters

        if checkpoint is not None:
            adapters = self._prior_adapters(Path(checkpoint)) + [Path(checkpoint)]
            recorded = self.read_train_config() if self.train_config_file.is_file() else {}
        else:
            info = self.check_loadable()
            adapters = self.adapters(info)
            if upto_stage is not None:
                adapters = adapters[:self._stage_count(upto_stage, info)]
            recorded = info.get("hyperparameters") or {}
        if adapter_scale is None:
            adapter_scale = float(recorded.get("adapter_scale", 1.0))
        if not 0.0 <= adapter_scale <= 1.0:
            raise ConfigError(f"adapter_scale must be between 0 and 1, got {adapter_scale!r}")
        base = self.load_base(cls, pooling, attention, max_length, dtype, precision, name=str(self.path))
        base.model = apply_adapters(base.model, adapters, scale=adapter_scale)
        base.adapter_scale = adapter_scale
        base.model.eval()
        return base

    def checkpoint_as_run(self, step: int, destination, stage: str | None = None) -> "RunFolder":
        """A new finished run folder at ``destination`` whose one stage is checkpoint ``step`` of ``stage`` (default:
        the run's first stage): that run stopped there, as its own run (with a constant learning rate, the same
        weights). Its record is this run's with that stage only, marked ``checkpoint_of``; the checksums are new."""
        record = self.read_record()
        stage = stage or record["stages"][0]
        if stage != record["stages"][0]:
            raise RunFolderError(f"{stage} is not the first stage of {self.path}: a later stage's checkpoint needs "
                                 "the adapters before it (load it with checkpoint= instead)")
        checkpoint = self.checkpoints_dir(stage) / f"checkpoint-{step}"
        if not is_complete(checkpoint):
            raise RunFolderError(f"{checkpoint} is not a complete checkpoint")
        out = RunFolder(destination)
        if out.path.exists():
            raise RunFolderError(f"{out.path} exists: choose another folder")
        out.adapter_dir(stage).mkdir(parents=True)
        for name in ADAPTER_FILES:
            shutil.copy2(checkpoint / name, out.adapter_dir(stage) / name)
        hyper = dict(record.get("hyperparameters") or {}, steps=step, stages=[stage])
        derived = {k: v for k, v in record.items() if k not in ("files", "backbone_fingerprint")}
        derived.update(adapters=[str(out.adapter_dir(stage).relative_to(out.path))], stages=[stage],
                       hyperparameters=hyper, training={"checkpoint_of": str(self.path), "step": step})
        out.write_record(derived, [stage])
        return out

    def _stage_count(self, upto_stage, info) -> int:
        stages = list(info.get("stages") or [])
        if isinstance(upto_stage, str):
            if upto_stage not in stages:
                raise RunFolderError(f"{self.path} has no stage {upto_stage!r} (its stages: {', '.join(stages)})")
            return stages.index(upto_stage) + 1
        if not 0 <= int(upto_stage) <= len(stages):
            raise RunFolderError(f"{self.path} has {len(stages)} stage(s), not {upto_stage}")
        return int(upto_stage)

    def _prior_adapters(self, checkpoint: Path) -> list[Path]:
        """The finished adapters of the stages before the one ``checkpoint`` belongs to."""
        stage_folder = checkpoint.resolve().parent.parent
        stages = self.stages()
        for index, stage in enumerate(stages):
            if self.stage_dir(stage).resolve() == stage_folder:
                prior = [self.adapter_dir(s) for s in stages[:index]]
                missing = [p for p in prior if not (p / ADAPTER_CONFIG).is_file()]
                if missing:
                    raise RunFolderError(f"{checkpoint} needs the finished adapters of the stages before it, "
                                         f"but {missing[0]} is missing")
                return prior
        raise RunFolderError(f"{checkpoint} is not a checkpoint of a stage of {self.path}")


def _corpus_paths(config) -> list:
    paths = []
    for stage in ("data", "model"):
        try:
            paths += list(config.data_of(stage) or [])
        except Exception:  # a config without that stage's data
            continue
    return paths


def is_run_folder(path) -> bool:
    """Whether ``path`` is a finished run folder (holds a run record)."""
    return path is not None and RunFolder(path).is_finished()


def read_run_config(path) -> dict:
    """The run record of ``path`` (see :meth:`RunFolder.read_record`)."""
    return RunFolder(path).read_record()


def read_train_config(run) -> dict:
    """The saved TrainConfig of a run folder, as a dict (see :meth:`RunFolder.read_train_config`)."""
    return RunFolder(run).read_train_config()
