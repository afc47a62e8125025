"""`make image-check`: build the image and smoke-test it with podman or docker, if present.

Standard library only (it runs before any virtualenv exists). Each check prints one line;
the first failure stops the run with exit 1. Without a container engine (podman, or docker
with a daemon that answers) it says so and exits 0, unless IMAGE_CHECK_REQUIRED=1.

What it checks:
  0. docker-compose.yml is valid (when a compose tool is installed);
  1. the image builds (podman: `--format docker`, which keeps the HEALTHCHECK);
  2. OCI labels and the health check are in the image;
  3. no pip and no setuptools in the runtime image;
  4. the app is its own small layer above the dependency layer;
  5. `serve` starts with a read-only root filesystem, /tmp as a tmpfs, SQLite on a tmpfs
     volume and the admin token and database URL read from *_FILE secrets; /healthz and
     /readyz answer;
  6. `exec … reconciler merchant create` reads the same *_FILE secrets (no entrypoint in
     between) and writes to the service's database, creating no other file;
  7. a stop drains and exits 0 within the compose file's stop_grace_period.

Environment: CONTAINER_ENGINE (podman or docker; default: the first one that works),
ENGINE_FLAGS (extra global flags, e.g. `--runtime /path/to/runc`), PYTHON_IMAGE (a base
image to build on, e.g. a local stand-in where the registry is unreachable),
IMAGE_CHECK_TAG (default reconciler:image-check).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = os.environ.get("IMAGE_CHECK_TAG", "reconciler:image-check")
TOKEN = "image-check-admin-token-0123456789abcdef"  # test-only
APP_LAYER_MAX_BYTES = 8 * 1024 * 1024
STOP_GRACE_S = 75  # docker-compose.yml, service reconciler


class CheckFailed(Exception):
    """One check did not hold."""


def engine() -> list[str] | None:
    """Return the engine command (with ENGINE_FLAGS), or None when there is none."""
    wanted = os.environ.get("CONTAINER_ENGINE")
    flags = shlex.split(os.environ.get("ENGINE_FLAGS", ""))
    for name in [wanted] if wanted else ["podman", "docker"]:
        if not name or shutil.which(name) is None:
            continue
        probe = subprocess.run([name, *flags, "info"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [name, *flags]
        print(f"image-check: {name} is installed but not usable: {last_line(probe.stderr)}")
    return None


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run(cmd: list[str], *, check: bool = True, timeout: float = 1800) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise CheckFailed(f"{' '.join(cmd[:4])} …: {last_line(done.stderr or done.stdout)}")
    return done.stdout


def ok(what: str) -> None:
    print(f"image-check: ok   {what}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def compose_config() -> None:
    """Validate docker-compose.yml with whichever compose tool is installed."""
    for tool in (["docker", "compose"], ["docker-compose"], ["podman-compose"]):
        if shutil.which(tool[0]) is None:
            continue
        if subprocess.run([*tool, "version"], capture_output=True).returncode != 0:
            continue  # e.g. docker without its compose plugin
        probe = [*tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
        done = subprocess.run(probe, capture_output=True, text=True)
        if done.returncode == 0:
            ok(f"docker-compose.yml is valid ({' '.join(tool)} config)")
            return
        raise CheckFailed(f"docker-compose.yml: {last_line(done.stderr)}")
    print("image-check: --   no compose tool here: docker-compose.yml not validated")


def build(cmd: list[str]) -> None:
    args = [*cmd, "build", "-t", TAG, "--build-arg", f"REVISION={revision()}"]
    args += ["--build-arg", f"CREATED={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]
    if "podman" in Path(cmd[0]).name:
        args += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    if os.environ.get("PYTHON_IMAGE"):
        args += ["--build-arg", f"PYTHON_IMAGE={os.environ['PYTHON_IMAGE']}"]
    run([*args, str(ROOT)])
    ok(f"built {TAG}")


def revision() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    return done.stdout.decode().strip() or "unknown"


def inspect(cmd: list[str]) -> None:
    image = json.loads(run([*cmd, "image", "inspect", TAG]))[0]
    config = image["Config"]
    labels = config.get("Labels") or {}
    for label in ("title", "version", "revision", "created"):
        if not labels.get(f"org.opencontainers.image.{label}"):
            raise CheckFailed(f"label org.opencontainers.image.{label} missing")
    prefix = "org.opencontainers.image."
    ok("OCI labels: " + ", ".join(sorted(k.removeprefix(prefix) for k in labels if prefix in k)))
    # docker keeps it in Config.Healthcheck, podman at the top level.
    health = config.get("Healthcheck") or image.get("Healthcheck") or image.get("HealthCheck") or {}
    if not health.get("Test"):
        raise CheckFailed("no HEALTHCHECK in the image (podman: build with --format docker)")
    ok("HEALTHCHECK kept")
    if config.get("User") != "10001:10001":
        raise CheckFailed(f"runs as {config.get('User')!r}, not 10001:10001")
    ok("runs as uid 10001")


def no_installers(cmd: list[str]) -> None:
    for module in ("pip", "setuptools"):
        probe = [*cmd, "run", "--rm", "--network", "none", TAG, "python", "-c", f"import {module}"]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            raise CheckFailed(f"{module} is importable in the runtime image")
    ok("no pip, no setuptools in the runtime image")


def layers(cmd: list[str]) -> None:
    rows = run([*cmd, "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", TAG])
    sizes = []
    for row in rows.splitlines():
        size, _, created_by = row.partition("\t")
        sizes.append((parse_size(size), created_by))
    # Newest first: the app's COPY into /opt/venv, then the dependencies' below it.
    copies = [size for size, by in sizes if "COPY" in by and "/opt/venv" in by]
    if len(copies) != 2:
        raise CheckFailed("the dependency and app layers are not two separate COPY layers")
    app, deps = copies
    if app > APP_LAYER_MAX_BYTES or app >= deps:
        raise CheckFailed(f"the app layer is {app} bytes (dependencies {deps})")
    ok(f"app layer {app // 1024} kB on a dependency layer of {deps // 1024 // 1024} MB")


def parse_size(text: str) -> int:
    number = "".join(c for c in text if c.isdigit() or c == ".") or "0"
    unit = text.strip().lstrip("0123456789.").strip().upper()
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KIB": 1024, "MIB": 1024**2}.get(unit, 1)
    return int(float(number) * scale)


def serve(cmd: list[str], secrets: Path) -> None:
    """Start `serve` read-only, exercise it, exec a command, stop it."""
    port = free_port()
    name = f"reconciler-image-check-{os.getpid()}"
    (secrets / "admin_token").write_text(TOKEN + "\n")
    (secrets / "database_url").write_text("sqlite:////data/reconciler.db\n")
    for path in secrets.iterdir():
        path.chmod(0o444)  # the container's uid 10001 reads them; 0400 in compose
    env = {
        "RECONCILER_PORT": str(port),
        "RECONCILER_ADMIN_TOKEN_FILE": "/run/secrets/admin_token",
        "RECONCILER_DATABASE_URL_FILE": "/run/secrets/database_url",
        "RECONCILER_SWEEP_INTERVAL_S": "0.5",
    }
    args = [*cmd, "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp"]
    args += ["--tmpfs", "/data:rw,mode=1777", "--network", "host"]
    args += ["-v", f"{secrets}:/run/secrets:ro"]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    run([*args, TAG])
    try:
        deadline = time.monotonic() + 60
        while get(f"http://127.0.0.1:{port}/readyz") != 200:
            state = run([*cmd, "inspect", "--format", "{{.State.Running}}", name]).strip()
            if state != "true" or time.monotonic() > deadline:
                logs = run([*cmd, "logs", name], check=False)
                raise CheckFailed(f"serve did not become ready: {last_line(logs)}")
            time.sleep(0.5)
        ok("serve is ready with a read-only root, /tmp a tmpfs, secrets read from *_FILE")
        if get(f"http://127.0.0.1:{port}/admin/payments") != 401:
            raise CheckFailed("the admin API is not on (the token file was not read)")
        ok("the admin token came from RECONCILER_ADMIN_TOKEN_FILE")
        created = run([*cmd, "exec", name, "reconciler", "merchant", "create", "acme"])
        listed = run([*cmd, "exec", name, "reconciler", "merchant", "list"])
        if "acme" not in listed or "created" not in created:
            raise CheckFailed("exec'd commands do not see the service's database")
        files = run([*cmd, "exec", name, "ls", "-A", "/app"]).split()
        if files:
            raise CheckFailed(f"an exec'd command created files in /app: {files}")
        ok("exec'd CLI commands read *_FILE themselves and use the service's database")
        started = time.monotonic()
        run([*cmd, "stop", "-t", str(STOP_GRACE_S), name], timeout=STOP_GRACE_S + 30)
        code = run([*cmd, "inspect", "--format", "{{.State.ExitCode}}", name]).strip()
        if code != "0":
            raise CheckFailed(f"a stop ended with exit code {code}, not 0")
        ok(f"a stop drained and exited 0 in {time.monotonic() - started:.1f} s")
    finally:
        run([*cmd, "rm", "-f", name], check=False)


def main() -> int:
    cmd = engine()
    if cmd is None:
        print(
            "image-check: SKIPPED: no container engine here (neither podman nor a docker "
            "daemon answers); the image was not built or checked"
        )
        return 1 if os.environ.get("IMAGE_CHECK_REQUIRED") == "1" else 0
    print(f"image-check: using {' '.join(cmd)}")
    try:
        compose_config()
        build(cmd)
        inspect(cmd)
        no_installers(cmd)
        layers(cmd)
        with tempfile.TemporaryDirectory(prefix="image-check-") as secrets:
            os.chmod(secrets, 0o755)
            serve(cmd, Path(secrets))
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"image-check: FAIL {exc}", file=sys.stderr)
        return 1
    print("image-check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
