"""Content-addressed cache entries, shared by concurrent jobs.

An entry `ROOT/<key>/` is built in a work folder beside it, renamed into place
and only then marked complete (`ROOT/<key>/COMPLETE`, itself written then
renamed). Readers trust an entry only with its marker, so a job killed
mid-build never leaves one that looks done. A file lock per key makes
concurrent jobs that need the same entry build it once: one builds, the
others wait and reuse it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

MARKER = "COMPLETE"


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def when_set(d: dict, **defaults: Any) -> dict:
    """`d` as a key sees it: fields added after keys were first written (`defaults`, with their defaults) only
    when set, so that every key from before a knob still names its entry."""
    return {k: v for k, v in d.items() if k not in defaults or v != defaults[k]}


_CODE_READ: dict[Path, str] = {}  # path -> digest, as first read by this process


def code_version(files: tuple[str, ...], root: Path | None = None) -> str:
    """Hash of source files of the package (paths relative to it): a key that includes it makes new cache
    entries when the code that computes them changes, and only then (comments and docstrings aside).

    Each file is read once per process, so a file edited while a long job runs does not file that job's
    later entries under code it never ran (`pipeline` reads every keyed file when it is imported)."""
    root = root or Path(__file__).parent
    h = hashlib.sha256()
    for rel in files:
        path = (root / rel).resolve()
        if path not in _CODE_READ:
            _CODE_READ[path] = source_digest(path)
        h.update(_CODE_READ[path].encode())
    return h.hexdigest()[:12]


def source_digest(path: Path) -> str:
    """Hash of what a Python file does: its syntax tree without docstrings, so that editing a comment, a
    docstring or the layout keeps every cache entry keyed on it (hours of training on these CPUs)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and ast.get_docstring(node, clean=False) is not None):
            node.body = node.body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def folder_digest(folder: Path | str) -> str:
    """Hash of the names and bytes of the files under a folder (hidden ones aside): a key that includes it
    changes when a local checkpoint is overwritten in place, which its path alone would not show."""
    root = Path(folder)
    files = sorted(f for f in root.rglob("*")  # not .git or a download tool's .cache: not the model
                   if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts))
    return _folder_digest(str(folder), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=8)
def _folder_digest(folder: str, files: tuple) -> str:  # files' (path, size, mtime): unchanged ones hash once
    h = hashlib.sha256()
    for path, _, _ in files:
        h.update(os.path.relpath(path, folder).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def write_atomic(path: Path | str, text: str) -> None:
    """Write a small file so readers see the old or the new content, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_complete(entry: Path) -> bool:
    return (entry / MARKER).is_file()


def work_dir(root: Path | str, key: str) -> Path:
    """Where an entry is built; it survives a crash so a rerun can resume from what it holds."""
    return Path(root) / f".work-{key}"


def publish(root: Path | str, key: str, build: Callable[[Path], Any], resume: bool = False,
            info: dict | None = None) -> tuple[Path, bool]:
    """Return (entry, built_now). `build(work)` fills `work`; it runs at most once per key at a time.

    With resume=False a leftover work folder from a killed build is wiped first;
    with resume=True it is handed to `build` as it is (for trainer checkpoints).
    """
    root = Path(root)
    entry = root / key
    if is_complete(entry):
        return entry, False
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{key}.lock")):
        if is_complete(entry):  # another job published it while we waited
            return entry, False
        work = work_dir(root, key)
        if work.exists() and not resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        build(work)
        if entry.exists():  # an unmarked entry is debris of a crash between rename and marker
            shutil.rmtree(entry)
        os.rename(work, entry)
        write_atomic(entry / MARKER, json.dumps(info or {}, sort_keys=True))
    return entry, True
