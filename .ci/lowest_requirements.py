"""Print the lowest versions pyproject.toml admits, as pip requirements.

For the packages whose lowest versions CI tests (``make test-lowest``):
``name>=X`` in ``[project] dependencies`` becomes ``name==X``. torch and
torchvision are not among them: the test environment reuses the main one's.
"""

import re
import sys
from pathlib import Path

#: The packages installed at their lowest admitted version.
LOWEST = ("numpy", "scikit-learn", "skorch", "pillow", "safetensors")


def dependencies(pyproject):
    """The ``[project] dependencies`` strings of a pyproject.toml text."""
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject, re.M | re.S)
    if block is None:
        sys.exit("pyproject.toml has no [project] dependencies list")
    text = re.sub(r"#[^\n]*", "", block[1])  # comments
    return re.findall(r'"([^"]+)"', text)


def lowest(requirements, names=LOWEST):
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*(,.*)?",
                             requirement.strip())
        if match and match[1].lower() in names:
            pins[match[1].lower()] = f"{match[1]}=={match[2]}"
    missing = set(names) - set(pins)
    if missing:
        sys.exit(f"pyproject.toml gives no lower bound (>=) for {sorted(missing)}")
    return [pins[name] for name in names]


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    print(" ".join(lowest(dependencies((root / "pyproject.toml").read_text()))))
