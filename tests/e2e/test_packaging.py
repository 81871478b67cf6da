"""Packaging: the declared dependency floors work, and the portable wheel is what it claims."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
from host_output import parse_outputs
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# The compile/verify tests that need no torch or brevitas: passes, lowering, the CLI, packed
# activations and the bit-exact QONNX kernels against their numpy twins.
FLOOR_TESTS = [
    "tests/passes/test_passes.py",
    "tests/passes/test_multibit.py",
    "tests/passes/test_packed_activations.py",
    "tests/e2e/test_cli.py",
    "tests/ops/test_ops_qonnx.py",
]


def declared_floors() -> list[str]:
    """`name==X` for every core dependency declared as `name>=X` in pyproject.toml."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", dep.replace(" ", ""))
        assert m, f"expected core dependency as 'name>=version', got {dep!r}"
        pins.append(f"{m[1]}=={m[2]}")
    return pins


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _cache_dir() -> Path:
    if os.environ.get("QCOMPILE_CACHE_DIR"):
        return Path(os.environ["QCOMPILE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qcompile"


# Read when the module is imported: tests/conftest.py points QCOMPILE_CACHE_DIR at a fresh
# directory for every test (the cost cache), which would rebuild the floors venv each run.
_FLOORS_CACHE = _cache_dir()


def _floor_venv(pins: list[str]) -> Path:
    """A venv with exactly the floors, keyed by the pins and cached outside the checkout (as the
    onnxruntime headers are), so a fresh clone on the same machine, CI's, does not rebuild it."""
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    env_dir = _FLOORS_CACHE / "test-floors" / key
    python = env_dir / "bin" / "python"
    if (env_dir / ".complete").is_file():
        return python
    probe = _run([sys.executable, "-m", "pip", "index", "versions", "onnx"])
    if probe.returncode != 0:
        pytest.skip(f"pip cannot reach the package index: {probe.stderr.strip()[-200:]}")
    venv.create(env_dir, with_pip=True, clear=True)
    install = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *pins, "pytest"])
    assert install.returncode == 0, f"installing the declared floors failed:\n{install.stderr[-3000:]}"
    (env_dir / ".complete").write_text("\n".join(pins) + "\n")
    return python


def test_declared_floors_compile_and_verify():
    pins = declared_floors()
    python = _floor_venv(pins)
    listed = _run([str(python), "-m", "pip", "list", "--format=freeze"])
    installed = dict(line.lower().replace("_", "-").split("==") for line in listed.stdout.split())
    for pin in pins:
        name, version = pin.lower().split("==")
        got = installed.get(name)
        assert got is not None and Version(got) == Version(version), (
            f"expected {pin} in the floor venv, got {name}=={got}")
    # The package from this source tree (its op library built in place by tools/setup.sh).
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    run = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLOOR_TESTS],
               cwd=ROOT, env=env, timeout=600)
    assert run.returncode == 0, f"tests fail with the declared floors {pins}:\n{run.stdout[-4000:]}"
    assert re.search(r"\d+ passed", run.stdout)


# --- the documents a release carries --------------------------------------------------------------

_USER_DOCS = ["README.md", "CHANGELOG.md", "custom_ops/SPEC.md", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", _USER_DOCS)
def test_doc_links_stay_inside_the_repository(doc: str):
    """A relative link names a file of this repository (someone who cloned it has nothing else)."""
    text = (ROOT / doc).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = ((ROOT / doc).parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc} links {target}, outside the repository"
        assert path.exists(), f"{doc} links {target}, which does not exist"


def test_readme_and_help_say_1_to_4_bit():
    from click.testing import CliRunner

    from qcompile.cli import main

    readme = (ROOT / "README.md").read_text()
    title = readme.splitlines()[0]
    assert title.startswith("# ") and "1–4 bit" in title, title
    assert not re.search(r"1[–-]3 bit", readme)
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert re.search(r"1[–-]4 bit", help_text), help_text


def test_license_and_changelog_entry_for_the_package_version():
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\]", changelog, re.M), (
        f"expected a '## [{version}]' entry in CHANGELOG.md")


# --- the portable wheel (tools/build_wheel.sh) ---------------------------------------------------

PLATFORM_TAG = "manylinux_2_28_x86_64"


@pytest.fixture(scope="module")
def portable_wheel() -> Path:
    """The wheel built by tools/build_wheel.sh (incremental: build/wheel-zig is kept)."""
    if shutil.which("gcc") is None:
        pytest.skip("the portable build takes cpuinfo.o from gcc's libgcc.a; no gcc on PATH")
    dist = ROOT / "build" / "test-dist"
    shutil.rmtree(dist, ignore_errors=True)
    build = _run(["bash", str(ROOT / "tools" / "build_wheel.sh"), str(dist)], cwd=ROOT, timeout=1500)
    if build.returncode != 0 and "Could not find a version" in build.stderr:
        pytest.skip(f"pip cannot reach the package index: {build.stderr.strip()[-200:]}")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = sorted(dist.glob("qcompile-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_library(portable_wheel: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(portable_wheel) as zf:
        zf.extract("qcompile/libqcompile_ops.so", out)
    return out / "qcompile" / "libqcompile_ops.so"


def test_wheel_is_tagged_and_audited_manylinux_2_28(portable_wheel: Path):
    python_tag, abi_tag, platforms = portable_wheel.name.removesuffix(".whl").split("-")[-3:]
    assert (python_tag, abi_tag) == ("py3", "none"), portable_wheel.name
    # auditwheel adds the older tags the wheel also satisfies (manylinux_2_24_x86_64.manylinux_2_28_x86_64)
    assert PLATFORM_TAG in platforms.split("."), portable_wheel.name
    show = _run([str(ROOT / "build" / "wheel-env" / "bin" / "auditwheel"), "show", str(portable_wheel)])
    assert show.returncode == 0, show.stderr
    text = " ".join(show.stdout.split())
    # auditwheel names the oldest manylinux policy the wheel satisfies
    m = re.search(r'(?:consistent with the following platform tag|constrains the platform tag to): '
                  r'"manylinux_2_(\d+)_x86_64"', text)
    assert m and int(m[1]) <= 28, text


def test_wheel_metadata_has_license_and_core_dependencies_only(portable_wheel: Path):
    with zipfile.ZipFile(portable_wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "License-Expression: Apache-2.0" in metadata
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in required if re.search(r"torch|scikit-learn|matplotlib|tqdm", r)], required


def test_wheel_library_needs_glibc_2_28_at_most(wheel_library: Path):
    symbols = _run(["objdump", "-T", str(wheel_library)])
    assert symbols.returncode == 0, symbols.stderr
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols.stdout)}
    assert versions, "expected GLIBC symbol versions in the library"
    assert max(versions) <= (2, 28), f"newest GLIBC symbol version {max(versions)}"
    assert "GLIBCXX" not in symbols.stdout and "CXXABI" not in symbols.stdout  # libc++ is linked in
    dynamic = _run(["readelf", "-d", str(wheel_library)]).stdout
    assert "libstdc++" not in dynamic and "libgcc_s" not in dynamic, dynamic


def test_wheel_library_exports_only_its_c_entry_points(wheel_library: Path):
    """RegisterCustomOps and the qcompile_* C ABI that qcompile.runtime reads with ctypes, and
    nothing of the libc++ / libunwind linked into it: exported, those would interpose on (or be
    interposed by) the libstdc++ and libgcc_s of onnxruntime and Python in the same process."""
    import qcompile

    def exported(lib: Path | str) -> set[str]:
        nm = _run(["nm", "-D", "--defined-only", "--format=posix", str(lib)])
        assert nm.returncode == 0, nm.stderr
        return {line.split()[0] for line in nm.stdout.splitlines() if line.strip()}

    dev_c_abi = {name for name in exported(qcompile.get_library_path()) if name.startswith("qcompile_")}
    assert dev_c_abi, "expected qcompile_* functions in the development library"
    assert exported(wheel_library) == {"RegisterCustomOps"} | dev_c_abi


# Plain onnxruntime, as a user's host does: register each library in its own session options
# (argv: model, input .npy, then pairs of library and output .npy), run the model, exit normally.
_RUN_WITH_LIBRARIES = """
import sys, numpy as np, onnxruntime as ort
model, x = sys.argv[1], np.load(sys.argv[2])
for lib, out in zip(sys.argv[3::2], sys.argv[4::2]):
    so = ort.SessionOptions()
    so.register_custom_ops_library(lib)
    so.intra_op_num_threads = 1
    np.save(out, ort.InferenceSession(model, so).run(None, {"x": x})[0])
"""


def _exit_status(run: subprocess.CompletedProcess) -> str:
    if run.returncode < 0:
        return f"killed by signal {-run.returncode} ({signal.Signals(-run.returncode).name})"
    return f"exit status {run.returncode}: {run.stderr[-3000:]}"


@pytest.fixture(scope="module")
def xnor_model(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A compiled XnorConv model, an input, and its output from the development library."""
    from graphs import binary_conv_model

    import qcompile

    out = tmp_path_factory.mktemp("xnor")
    with pytest.MonkeyPatch.context() as mp:  # an empty cost cache, as every test has (conftest.py)
        mp.setenv("QCOMPILE_CACHE_DIR", str(out / "cache"))
        result = qcompile.compile(binary_conv_model(cin=70, cout=16, seed=4), out / "m.q.onnx", wbits=1)
    assert any(n.op_type == "XnorConv" for n in result.model.graph.node)
    x = np.random.default_rng(6).standard_normal((2, 70, 8, 8)).astype(np.float32)
    np.save(out / "x.npy", x)
    (want,) = qcompile.InferenceSession(str(out / "m.q.onnx"), threads=1).run(None, {"x": x})
    return out / "m.q.onnx", out / "x.npy", want


def test_wheel_library_runs_a_compiled_model_and_exits_cleanly(wheel_library: Path, xnor_model, tmp_path: Path):
    model, x, want = xnor_model
    # onnxruntime dlcloses the library before the process exits; the library's static destructors
    # must run then (cmake/zig/dso_finalize.cc), not from exit() into unmapped code (a segfault).
    run = _run([sys.executable, "-c", _RUN_WITH_LIBRARIES, str(model), str(x),
                str(wheel_library), str(tmp_path / "got.npy")], timeout=300)
    assert run.returncode == 0, _exit_status(run)
    # Same kernels and source, another compiler; -ffp-contract=off in both builds, so the float
    # scale/bias step rounds the same way and the outputs are identical.
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), want)


@pytest.mark.parametrize("first", ["dev", "wheel"])
def test_wheel_library_beside_the_development_library(wheel_library: Path, xnor_model, tmp_path: Path,
                                                      first: str):
    """Both builds in one process (libstdc++ and a private libc++ side by side), each in its own
    session, in either order: same outputs, and the process exits normally."""
    import qcompile

    model, x, want = xnor_model
    libs = {"dev": qcompile.get_library_path(), "wheel": str(wheel_library)}
    order = [first, "wheel" if first == "dev" else "dev"]
    args = [arg for name in order for arg in (libs[name], str(tmp_path / f"{name}.npy"))]
    run = _run([sys.executable, "-c", _RUN_WITH_LIBRARIES, str(model), str(x), *args], timeout=300)
    assert run.returncode == 0, _exit_status(run)
    for name in order:
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), want, err_msg=name)


_RUNTIME_WITH_LIBRARY = """
import json, sys, numpy as np, qcompile
from qcompile import runtime
(y,) = qcompile.InferenceSession(sys.argv[1], threads=1).run(None, {"x": np.load(sys.argv[2])})
np.save(sys.argv[3], y)
print(json.dumps({op: [[v.name, v.isa, v.supported] for v in runtime.kernel_table(op)]
                  for op in runtime.KERNEL_OPS}))
"""


def test_wheel_library_through_qcompile_runtime(wheel_library: Path, xnor_model, tmp_path: Path):
    """qcompile.runtime on the wheel's library: the same kernel-variant tables through its C ABI
    (ctypes) as the development build, a session through qcompile.InferenceSession, a clean exit."""
    import json

    from qcompile import runtime

    model, x, want = xnor_model
    env = {**os.environ, runtime.LIBRARY_ENV: str(wheel_library)}
    run = _run([sys.executable, "-c", _RUNTIME_WITH_LIBRARY, str(model), str(x), str(tmp_path / "got.npy")],
               env=env, timeout=300)
    assert run.returncode == 0, _exit_status(run)
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), want)
    dev = {op: [[v.name, v.isa, v.supported] for v in runtime.kernel_table(op)] for op in runtime.KERNEL_OPS}
    assert json.loads(run.stdout) == dev


def test_wheel_library_in_the_cpp_host(host: Path, wheel_library: Path, xnor_model, tmp_path: Path):
    """custom_ops/examples/host.cc serving with the wheel's library: Python's outputs, and a clean
    exit (the host's session options unload the library before exit, as Python's do)."""
    model, x, want = xnor_model
    np.load(x).astype("<f4").tofile(tmp_path / "x.f32")
    run = _run([str(host), str(model), str(wheel_library), str(tmp_path / "x.f32"), "x".join(map(str, np.load(x).shape))], timeout=300)
    assert run.returncode == 0, _exit_status(run)
    (got,) = parse_outputs(run.stdout).values()
    np.testing.assert_array_equal(got, want)
