"""The example configs that come with the package: list them, name one directly, copy them out.

The repository's configs/ folder is the one source of truth; mha_cli/examples/
is its copy inside the package (tests/test_shipped_examples.py keeps the two
byte for byte the same), so `pip install` users have them without a clone.

A config argument of the form `example:NAME` names a shipped example. It is never
a file and never an override: an override has a `=`, and a file whose name starts
with `example:` is named `./example:...`. In Python, a str of that form names an
example; a Path is always a file.

The examples name their own code as `configs/FILE.py:attr`, the path a reader of
the repository runs them with. Named directly, an example finds that code beside
itself in the package; copied with `mha examples copy`, it lands in ./configs/, so
the same path works from the working folder. No torch here.
"""

from __future__ import annotations

import difflib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
PREFIX = "example:"
COPY_FOLDER = "configs"  # where `mha examples copy` puts them: the repository's layout, so their paths work
# configs/FILE.py:attr, the form the examples use to name the code shipped beside them
_OWN_CODE = re.compile(r"^configs/([A-Za-z0-9_]+\.py)(:.+)$")


@dataclass(frozen=True)
class Example:
    name: str  # the file name without .yaml: what `example:NAME` and `mha examples copy NAME` take
    summary: str  # the first sentence of the file's leading comment
    files: tuple[str, ...]  # the YAML file and the code files it names, as copied

    @property
    def path(self) -> Path:
        return EXAMPLES_DIR / f"{self.name}.yaml"


def is_example_reference(config: object) -> bool:
    return isinstance(config, str) and config.startswith(PREFIX)


def _first_sentence(text: str) -> str:
    joined = " ".join(text.split())
    # A sentence ends at . ! or ? after a word, before a capital or a code span (not at "i-64 .." or "e.g.").
    parts = re.split(r"(?<=[A-Za-z0-9)\]\"'][.!?])\s+(?=[A-Z`])", joined, maxsplit=1)
    return parts[0]


def _summary(path: Path) -> str:
    comment = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    return _first_sentence(" ".join(comment)) if comment else ""


def _own_code(path: Path) -> list[str]:
    """The shipped code files a YAML example names (configs/FILE.py:attr)."""
    names = re.findall(r"configs/([A-Za-z0-9_]+\.py):", path.read_text(encoding="utf-8"))
    return sorted({name for name in names if (EXAMPLES_DIR / name).is_file()})


def examples() -> list[Example]:
    """Every shipped example, by name."""
    found = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        found.append(Example(path.stem, _summary(path), (path.name, *_own_code(path))))
    return found


def find(name: str) -> Example:
    """The example called `name` (with or without .yaml); a UsageError naming the close ones otherwise."""
    wanted = name.removeprefix(PREFIX).removesuffix(".yaml").removesuffix(".yml")
    every = examples()
    for example in every:
        if example.name == wanted:
            return example
    names = [example.name for example in every]
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UsageError(f"no shipped example is called {wanted!r}; {hint}the examples are: {', '.join(names)} "
                     "(`mha examples` lists them)")


def with_own_code_found(data: Any) -> Any:
    """An example's data with its configs/FILE.py references pointed at the files shipped beside it."""
    if not isinstance(data, dict):
        return data

    def located(value: Any) -> Any:
        match = _OWN_CODE.match(value) if isinstance(value, str) else None
        if match is None or not (EXAMPLES_DIR / match.group(1)).is_file():
            return value
        return f"{EXAMPLES_DIR / match.group(1)}{match.group(2)}"

    sparse = data.get("sparse")
    if isinstance(sparse, dict) and "mask_mod" in sparse:
        sparse["mask_mod"] = located(sparse["mask_mod"])
    score_mod = data.get("score_mod")
    if isinstance(score_mod, dict) and "function" in score_mod:
        score_mod["function"] = located(score_mod["function"])
    elif isinstance(score_mod, str):  # the shorthand `score_mod: configs/FILE.py:name`
        data["score_mod"] = located(score_mod)
    implementations = data.get("implementations")
    if isinstance(implementations, dict):
        for key, value in implementations.items():
            implementations[key] = located(value)
    return data


def copy(names: list[str], into: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the named examples (and the code files they name) into `into`/configs/.

    Refuses, before writing anything, when a file there would be replaced and differs
    (an identical file is left as it is): nothing a user edited is lost without `overwrite`.
    Returns the paths written.
    """
    chosen = [find(name) for name in names]
    folder = into / COPY_FOLDER
    files = sorted({file for example in chosen for file in example.files})
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; the examples are copied into a folder of that name")
    clashes = [folder / file for file in files
               if (folder / file).exists() and (folder / file).read_bytes() != (EXAMPLES_DIR / file).read_bytes()]
    if clashes and not overwrite:
        shown = ", ".join(f"{COPY_FOLDER}/{path.name}" for path in clashes)
        raise UsageError(f"{shown} already exist{'s' if len(clashes) == 1 else ''} and differ{'s' if len(clashes) == 1 else ''} "
                         "from the shipped example; nothing was copied (add --overwrite to replace)")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file in files:
        target = folder / file
        if target.exists() and target.read_bytes() == (EXAMPLES_DIR / file).read_bytes():
            continue
        shutil.copyfile(EXAMPLES_DIR / file, target)
        written.append(target)
    return written
