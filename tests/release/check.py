"""The release check behind ``tox -e release``: build every distribution, check it, install
the built wheels (not the source tree) into a fresh virtual environment and use them.

1. ``python -m build`` makes the sdist and the wheel of sdk-core and of each plugin;
2. ``twine check`` validates their metadata (README rendering included);
3. each plugin's wheel must require ``sdk_core.version.requirement()`` (its pin is derived
   from the hook API version) and carry the same version as its ``__version__``;
4. a fresh venv gets the core, NumPy and device-plugin wheels (framework plugins would pull
   gigabytes), then runs ``sdk doctor`` and a one-epoch ``sdk train``.

    python tests/release/check.py WORKDIR
"""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT, *sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())]
INSTALLED = ("sdk_core", "sdk_numpy", "sdk_nvidia", "sdk_tpu", "sdk_ascend")


def run(*cmd: str | Path, **kwargs) -> subprocess.CompletedProcess:
    print("$", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(name).decode()


def check_plugin_metadata(wheels: list[Path]) -> None:
    version_module = runpy.run_path(str(ROOT / "sdk_core" / "version.py"))  # no dependency needed
    __version__, wanted = version_module["__version__"], version_module["requirement"]().replace("sdk-core", "")
    for wheel in wheels:
        meta = metadata(wheel)
        version = re.search(r"^Version: (.+)$", meta, re.M)[1]
        assert version == __version__, f"{wheel.name}: version {version}, sdk-core is {__version__}"
        if wheel.name.startswith("sdk_core-"):
            continue
        pins = re.findall(r"^Requires-Dist: sdk-core\s*(.*)$", meta, re.M)
        assert pins, f"{wheel.name} does not require sdk-core"
        got = ",".join(sorted(pins[0].replace(" ", "").split(",")))
        assert got == ",".join(sorted(wanted.split(","))), f"{wheel.name} pins sdk-core {pins[0]}, wanted {wanted}"
        print(f"ok  {wheel.name}: version {version}, requires sdk-core{pins[0]}")


def main() -> None:
    work = Path(sys.argv[1]).resolve()
    dist = work / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.iterdir():
        old.unlink()
    for project in PROJECTS:
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, project, stdout=subprocess.DEVNULL)
    files = sorted(dist.iterdir())
    assert len(files) == 2 * len(PROJECTS), f"expected an sdist and a wheel per project, got {[f.name for f in files]}"
    run(sys.executable, "-m", "twine", "check", "--strict", *files)
    wheels = [f for f in files if f.suffix == ".whl"]
    check_plugin_metadata(wheels)

    env = work / "venv"
    venv.create(env, clear=True, with_pip=True)
    bin_dir = env / ("Scripts" if sys.platform == "win32" else "bin")
    chosen = [w for w in wheels if w.name.split("-")[0] in INSTALLED]
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", *chosen, "scikit-learn")
    run(bin_dir / "sdk", "doctor", cwd=work)
    run(
        bin_dir / "sdk",
        "train",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--framework",
        "numpy",
        "--out",
        work / "mlp.safetensors",
        cwd=work,
    )
    run(bin_dir / "sdk", "predict", "--weights", work / "mlp.safetensors", cwd=work)
    where = run(
        bin_dir / "python", "-c", "import sdk_core; print(sdk_core.__file__)", capture_output=True, text=True, cwd=work
    ).stdout.strip()
    assert Path(where).is_relative_to(env) and "site-packages" in where, (
        f"the fresh venv imported {where}, not the installed wheel"
    )
    print(f"release check passed: {len(files)} files built and checked, wheels installed and used")


if __name__ == "__main__":
    main()
