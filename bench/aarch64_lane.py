"""The emulated aarch64 lane: an arm64 CPython 3.11 with RKNNLite, run under qemu-user.

Everything lives under `<repo>/.cache/aarch64/` and each step leaves a stamp, so only the
first run downloads anything (about a minute); later runs check the stamps in milliseconds.

What RKNNLite needs to start off a board is placed inside the sysroot, never on the host:
qemu-user's `-L SYSROOT` makes the guest see `SYSROOT/<path>` for any absolute path that
exists there, `/proc` and `/dev` included. So `/proc/device-tree/compatible` (an RK3588),
`/dev/dri/renderD129` (an empty file; RKNNLite only checks it exists) and
`/usr/lib/librknnrt.so` (a symlink to the cross-built test double) satisfy its start-up
checks without touching the vendor code.

Run `python bench/aarch64_lane.py` to build the lane and print how to use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LANE_DIR = REPO / ".cache" / "aarch64"

HOST_PACKAGES = {
    # Executable or file that proves the package is installed -> Debian package.
    "qemu-aarch64-static": "qemu-user-static",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    # Only a Recommends of the cross gcc; without it the compiler falls back to the host's
    # headers and fails on bits/wordsize.h.
    "/usr/aarch64-linux-gnu/include/stdio.h": "libc6-dev-arm64-cross",
}
DEBIAN_SOURCES = (
    "http://deb.debian.org/debian bookworm main",
    "http://deb.debian.org/debian bookworm-updates main",
    "http://deb.debian.org/debian-security bookworm-security main",
)
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
GUEST_PACKAGES = ("python3.11",)
WHEELS = (
    "numpy==1.26.4",
    "cffi==2.1.1",
    "psutil==7.2.2",
    "ruamel.yaml==0.19.1",
    "rknn-toolkit-lite2==2.5.0",
)
# RKNNLite reads the SoC from here; an RK3588 makes it apply core masks as on a Rock 5B.
DEVICE_TREE_COMPATIBLE = b"radxa,rock-5b\0rockchip,rk3588\0"
GUEST_LIBRARY = "/usr/lib/librknnrt.so"


class LaneError(RuntimeError):
    """The emulated lane could not be built; the message says which step and how to fix it."""


@dataclass(frozen=True)
class Lane:
    """A built lane: how to run a Python script as aarch64 under qemu."""

    sysroot: Path
    site: Path
    library: Path

    def command(self, argv: list[str]) -> list[str]:
        """The host command running `python3.11 argv...` inside the emulated lane."""
        qemu = shutil.which("qemu-aarch64-static")
        if qemu is None:
            raise LaneError("qemu-aarch64-static is not on PATH; run ensure_lane() first")
        python = self.sysroot / "usr" / "bin" / "python3.11"
        return [qemu, "-L", str(self.sysroot), str(python), *argv]

    def env(self) -> dict[str, str]:
        """Environment for the guest: its own site dir, rkrt and the test double's helpers.

        rkrt is pure Python, so the guest imports it straight from the source tree.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), str(REPO), str(REPO / "tests")])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["RKRT_LIBRARY"] = GUEST_LIBRARY
        return env

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a guest Python command; kwargs go to subprocess.run."""
        return subprocess.run(self.command(argv), env=self.env(), **kwargs)


def _log(message: str) -> None:
    print(f"[aarch64-lane] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise LaneError(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd[:6])} ...\n" + "\n".join(tail)
        )
    return result


def _stamp_ok(stamp: Path, key: str) -> bool:
    return stamp.is_file() and stamp.read_text() == key


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _host_package_present(probe: str) -> bool:
    return Path(probe).exists() if probe.startswith("/") else shutil.which(probe) is not None


def ensure_host_packages() -> None:
    """Install qemu-user-static and the aarch64 cross compiler with apt-get when missing."""
    missing = sorted(
        {pkg for probe, pkg in HOST_PACKAGES.items() if not _host_package_present(probe)}
    )
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LaneError(
            f"missing host packages {missing}; install them with "
            f"`sudo apt-get install {' '.join(missing)}` (Debian/Ubuntu) and rerun"
        )
    _log(f"installing host packages {missing} with apt-get")
    _run(["apt-get", "update", "-q"], "apt-get update")
    _run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        "apt-get install",
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _private_apt(root: Path) -> list[str]:
    """apt-get options that resolve arm64 packages without touching the host's dpkg state."""
    state, cache, etc = root / "state", root / "cache", root / "etc"
    for d in (state / "lists" / "partial", cache / "archives" / "partial", etc / "parts"):
        d.mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (etc / "sources.list").write_text(
        "".join(f"deb [arch=arm64 signed-by={DEBIAN_KEYRING}] {s}\n" for s in DEBIAN_SOURCES)
    )
    return [
        "apt-get",
        "-q",
        "-o",
        f"Dir::State={state}",
        "-o",
        f"Dir::State::status={state / 'status'}",
        "-o",
        f"Dir::Cache={cache}",
        "-o",
        f"Dir::Etc::SourceList={etc / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={etc / 'parts'}",
        "-o",
        "APT::Architecture=arm64",
        "-o",
        "APT::Architectures::=arm64",
        "-o",
        "Debug::NoLocking=1",
        # Host hooks (appstream, packagekit) have nothing to do with this private state.
        "-o",
        "APT::Update::Post-Invoke-Success::=",
    ]


def ensure_sysroot() -> Path:
    """Debian bookworm's arm64 python3.11 and its library closure, unpacked with dpkg -x."""
    sysroot = LANE_DIR / "sysroot"
    stamp = LANE_DIR / "sysroot.stamp"
    key = _key(GUEST_PACKAGES, DEBIAN_SOURCES)
    if _stamp_ok(stamp, key):
        return sysroot
    _log("downloading Debian arm64 python3.11 and its dependencies (private apt state)")
    apt = _private_apt(LANE_DIR / "apt")
    _run([*apt, "update"], "apt-get update (arm64, private state)")
    _run(
        [*apt, "install", "-y", "-d", "--no-install-recommends", *GUEST_PACKAGES],
        "apt-get install -d (arm64, private state)",
    )
    debs = sorted((LANE_DIR / "apt" / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise LaneError("apt-get downloaded no .deb for the arm64 sysroot; check the apt output")
    if sysroot.exists():
        shutil.rmtree(sysroot)
    sysroot.mkdir(parents=True)
    _log(f"unpacking {len(debs)} .debs into {sysroot}")
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"dpkg-deb -x {deb.name}")
    if not (sysroot / "usr" / "bin" / "python3.11").exists():
        raise LaneError(f"{sysroot}/usr/bin/python3.11 is missing after unpacking the .debs")
    stamp.write_text(key)
    return sysroot


def ensure_wheels() -> Path:
    """The aarch64 wheels (numpy, cffi, RKNNLite ...) installed into a guest-only site dir."""
    site = LANE_DIR / "site"
    stamp = LANE_DIR / "site.stamp"
    key = _key(WHEELS)
    if _stamp_ok(stamp, key):
        return site
    wheels = LANE_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    platforms = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # pip resolves for the guest, not for this host, in both steps.
    guest = [
        "--only-binary=:all:",
        *("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"),
        *[arg for p in platforms for arg in ("--platform", p)],
    ]
    _log(f"downloading aarch64 wheels {list(WHEELS)}")
    _run(
        [*pip, "download", *guest, "-d", str(wheels), *WHEELS],
        "pip download (aarch64 wheels)",
    )
    if site.exists():
        shutil.rmtree(site)
    _run(
        [
            *pip,
            "install",
            *("--no-index", "--find-links", str(wheels), "--no-compile"),
            *guest,
            *("--target", str(site)),
            *WHEELS,
        ],
        "pip install --target (aarch64 wheels)",
    )
    stamp.write_text(key)
    return site


def ensure_board_files(sysroot: Path, library: Path) -> None:
    """What RKNNLite checks at init_runtime, placed where only the guest sees it."""
    compatible = sysroot / "proc" / "device-tree" / "compatible"
    compatible.parent.mkdir(parents=True, exist_ok=True)
    compatible.write_bytes(DEVICE_TREE_COMPATIBLE)
    render = sysroot / "dev" / "dri" / "renderD129"
    render.parent.mkdir(parents=True, exist_ok=True)
    render.touch()
    link = sysroot / GUEST_LIBRARY.lstrip("/")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(library)


def build_guest_library() -> Path:
    """The test-double librknnrt.so cross-built for aarch64 (cached by the fake's builder)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from fake_rknnrt import build_library
    except ImportError as exc:
        raise LaneError(
            f"tests/fake_rknnrt is not importable ({exc}); it builds the test double"
        ) from exc
    return Path(build_library(cc="aarch64-linux-gnu-gcc"))


def ensure_lane() -> Lane:
    """Build (or reuse) every piece of the lane and return how to run it."""
    ensure_host_packages()
    LANE_DIR.mkdir(parents=True, exist_ok=True)
    sysroot = ensure_sysroot()
    site = ensure_wheels()
    library = build_guest_library()
    ensure_board_files(sysroot, library)
    return Lane(sysroot=sysroot, site=site, library=library)


def cached_lane() -> Lane | None:
    """The lane if a previous run fully built it and qemu is installed, else None (no network)."""
    if not all(_host_package_present(p) for p in HOST_PACKAGES):
        return None
    if not (
        _stamp_ok(LANE_DIR / "sysroot.stamp", _key(GUEST_PACKAGES, DEBIAN_SOURCES))
        and _stamp_ok(LANE_DIR / "site.stamp", _key(WHEELS))
    ):
        return None
    sysroot = LANE_DIR / "sysroot"
    library = build_guest_library()
    ensure_board_files(sysroot, library)
    return Lane(sysroot=sysroot, site=LANE_DIR / "site", library=library)


if __name__ == "__main__":
    lane = ensure_lane()
    check = lane.run(
        [
            "-c",
            "import platform, numpy, rknnlite.api; print(platform.machine(), numpy.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    print(check.stdout.strip() or check.stderr.strip())
    print("run a guest script with:", " ".join(lane.command(["SCRIPT.py"])))
