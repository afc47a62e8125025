"""The wheel alone runs the service: built, installed in a fresh venv outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from e2e.conftest import free_port, wait_until
from reconciler.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_cGFja2FnaW5nLXRlc3Qtc2VjcmV0LTEyMzQ1"


def run(argv: list[str | Path], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = Settings().child_env()
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out, ROOT], env, out)
    (built,) = out.glob("reconciler-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv in a temp directory with only the wheel (and its dependencies) installed."""
    home = tmp_path_factory.mktemp("fresh")
    venv.create(home / "venv", with_pip=True)
    env = Settings().child_env()
    env.pop("PYTHONPATH", None)
    run([home / "venv/bin/pip", "install", "--quiet", wheel], env, home)
    yield home


def test_the_wheel_holds_every_module_and_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "reconciler").rglob("*.py")}
    migrations = {
        "reconciler/" + str(p.relative_to(ROOT))
        for pattern in ("*.py", "*.mako")
        for p in (ROOT / "migrations").rglob(pattern)
    }

    assert sources - names == set(), "add the missing packages to pyproject.toml"
    assert migrations - names == set()
    assert "reconciler/migrations/versions/0001_initial_schema.py" in names


def test_an_installed_wheel_migrates_creates_a_merchant_and_serves_a_payment(
    installed: Path,
) -> None:
    bin_dir = installed / "venv/bin"
    where = run(
        [bin_dir / "python", "-c", "import reconciler; print(reconciler.__file__)"],
        Settings().child_env(),
        installed,
    )
    assert where.startswith(str(installed)), where
    port, sim_port = free_port(), free_port()
    env = Settings(
        database_url=f"sqlite:///{installed / 'reconciler.db'}",
        simulator_url=f"http://127.0.0.1:{sim_port}",
        simulator_webhook_secret=(SECRET,),
    ).child_env()
    env.pop("PYTHONPATH", None)

    assert "at head" in run([bin_dir / "reconciler", "db", "upgrade"], env, installed)
    key = run([bin_dir / "reconciler", "merchant", "create", "acme"], env, installed)
    headers = {"Authorization": f"Bearer {key.strip().splitlines()[-1]}"}
    simulator = subprocess.Popen(
        [bin_dir / "reconciler", "simulator", "--port", str(sim_port), "--settle-min", "1"],
        env=env,
        cwd=installed,
        stdout=subprocess.DEVNULL,
    )
    service = subprocess.Popen(
        [bin_dir / "reconciler", "serve", "--port", str(port)],
        env=env,
        cwd=installed,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert service.poll() is None, "serve exited"
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        def simulator_up() -> bool:
            assert simulator.poll() is None, "the simulator exited"
            try:
                url = f"{env['RECONCILER_SIMULATOR_URL']}/_sim/identity"
                return requests.get(url, timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(healthy, 60, "the installed service answering /healthz")
        wait_until(simulator_up, 30, "the installed simulator answering")
        created = requests.post(
            f"{base}/v1/payments",
            json={
                "merchant_reference": "order-1",
                "gateway": "simulator",
                "amount": 1500,
                "currency": "EUR",
            },
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert created.json()["gateway_payment_id"].startswith("sim_pay_")
    finally:
        for process in (service, simulator):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
