"""API throughput: POST /timer and GET /timer/{id} from one API process.

Starts a private Redis (Debian's 7.0, ``appendfsync always``, unless told
otherwise) and one API process of the code under test (``--code DIR``:
``DIR/.venv/bin/timer-wheel api --port P``, one uvicorn process, uvloop
+ httptools, no access log), then drives it with wrk
(``benchmarks/wrk/post_timer.lua``; for GET, ids created beforehand and
``benchmarks/wrk/get_timer.lua`` cycling through them), 64 connections and
1 thread, ``--duration`` seconds a run, ``--runs`` runs of each::

    python benchmarks/api_load.py --runs 5

``--server granian`` serves the same app with granian's ASGI interface
instead, ``--server granian-rsgi`` with its RSGI interface
(``serve_api.py`` and ``rsgi_app.py``; granian must be importable by the
code's venv or be installed in ``--granian-path``, default
/tmp/tw-granian), and
``--no-metrics`` replaces the API's Prometheus counters and histograms
with no-ops first. Without wrk on PATH (``apt-get install -y wrk``) it
falls back to locust (``benchmarks/locustfile.py``, a 3:1 mix, both
figures from one run).

With two or more CPUs the API is pinned to CPU 0 and Redis and the load
generator to CPU 1 (``--no-pin`` turns that off), so that the API process
has a core of its own and the figure is that of one API process.
``--profile post|get`` adds a run with py-spy attached to the API process
and prints where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _api import Creator
from _common import (
    BENCH_DIR,
    BIN_DIR,
    GRANIAN_DIR,
    Code,
    CpuMeter,
    Group,
    Proc,
    add_common_args,
    cpu_count,
    deadline_alarm,
    free_port,
    median,
    pin_pid,
    pinned,
    process_group,
    py_spy_record,
    save_report,
    wait_http,
)
from _redis import RedisCost
from _service import log_summary, service_env

WRK_DIR = BENCH_DIR / "wrk"
PREFILL = 10_000


def _parse_wrk(text: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    done = re.search(r"(\d+) requests in", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)", text)
    out = {"rps": rps, "non_2xx": int(bad.group(1)) if bad else 0}
    if done:
        out["requests"] = int(done.group(1))
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if found:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
            out[f"p{pct}_ms"] = round(float(found.group(1)) * scale, 2)
    if errors:
        out["socket_errors"] = errors.group(1).strip()
    return out


def run_wrk(
    base_url: str,
    script: str,
    args: argparse.Namespace,
    extra: list[str],
    cpus: str | None,
    meter: CpuMeter | None = None,
) -> dict[str, float]:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(args.duration))}s",
        "--latency",
        "-s",
        str(WRK_DIR / script),
        base_url,
    ]
    if extra:
        cmd += ["--", *extra]
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(
            pinned(cmd, cpus),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=BENCH_DIR,
        )
        # wait4 rather than wait: it also tells the load generator's CPU.
        deadline = time.monotonic() + args.duration + 30
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wrk_s = usage.ru_utime + usage.ru_stime
        shares = meter.shares(wrk=wrk_s) if meter else None
        stdout.seek(0)
        text = stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    result: dict[str, object] = _parse_wrk(text)
    if shares is not None:
        result["cpu"] = shares
    return result


def run_locust(
    base_url: str, args: argparse.Namespace, workdir: Path, cpus: str | None
) -> dict[str, dict[str, float]]:
    prefix = workdir / "locust"
    cmd = [
        str(BIN_DIR / "locust"),
        "-f",
        str(BENCH_DIR / "locustfile.py"),
        "--headless",
        "-u",
        str(args.connections),
        "-r",
        str(args.connections),
        "-t",
        f"{int(args.duration)}s",
        "--host",
        base_url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "5",
    ]
    subprocess.run(
        pinned(cmd, cpus),
        capture_output=True,
        timeout=args.duration + 60,
        check=False,
    )
    results = {}
    with open(f"{prefix}_stats.csv") as handle:
        for row in csv.DictReader(handle):
            key = {"POST": "post", "GET": "get"}.get(row["Type"])
            if key:
                results[key] = {
                    "rps": float(row["Requests/s"]),
                    "non_2xx": int(row["Failure Count"]),
                    "p50_ms": float(row["50%"]),
                    "p99_ms": float(row["99%"]),
                }
    return results


HOOK_URL = "http://127.0.0.1:9/hook"


def prefill(base_url: str, count: int) -> list[str]:
    """Create ``count`` timers due in 6 hours through the API; their ids."""
    creator = Creator([base_url], lanes=32)
    ids = asyncio.run(creator.delays(HOOK_URL, [6 * 3600] * count))
    if creator.errors:
        raise RuntimeError(f"prefill failed: {dict(creator.errors)}")
    return ids


def granian_path(code: Code, path: Path) -> str | None:
    """PYTHONPATH that makes granian importable by ``code``'s venv ("" when
    it already is); None when granian is nowhere."""
    probe = subprocess.run(
        [str(code.python), "-c", "import granian"],
        cwd=code.root,
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return ""
    if (path / "granian").is_dir():
        return str(path)
    return None


def start_api(
    group: Group,
    code: Code,
    args: argparse.Namespace,
    env: dict[str, str],
    port: int,
    cpus: str | None,
) -> Proc:
    """The API as ``--server`` and ``--no-metrics`` ask."""
    if args.server == "uvicorn" and not (args.no_metrics or args.wrapper):
        return group.role(code, "api", ["api", "--port", str(port)], env, cpus)
    cmd = [str(BENCH_DIR / "serve_api.py"), "--port", str(port)]
    cmd += ["--server", args.server]
    if args.no_metrics:
        cmd.append("--no-metrics")
    env = dict(env)
    if args.server.startswith("granian"):
        extra = granian_path(code, args.granian_path)
        if extra is None:
            raise SystemExit(
                f"granian is not importable by {code.python} nor in "
                f"{args.granian_path}: install it with\n  ~/.local/bin/uv "
                f"pip install --python {code.python} --target "
                f"{args.granian_path} --no-deps granian"
            )
        if extra:
            env["PYTHONPATH"] = extra
    return group.script(
        "api", cmd, cpus, python=code.python, env=env, cwd=code.root
    )


def profile_api(
    group: Group,
    api_pid: int,
    base_url: str,
    script: str,
    extra: list[str],
    args: argparse.Namespace,
    cpus: str | None,
    workdir: Path,
) -> Path:
    out = workdir / f"profile-{script.split('_')[0]}.txt"
    spy = group.spawn(
        "py-spy",
        py_spy_record(api_pid, args.duration, 250, out),
        cpus=cpus,
        may_exit=True,
    )
    run_wrk(base_url, script, args, extra, cpus)
    spy.popen.wait(timeout=args.duration + 30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--prefill", type=int, default=10_000)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--tool", choices=["auto", "wrk", "locust"], default="auto"
    )
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian", "granian-rsgi"],
        default="uvicorn",
    )
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="replace the API's Prometheus metrics with no-ops",
    )
    parser.add_argument(
        "--wrapper",
        action="store_true",
        help="serve through serve_api.py even with metrics on (the "
        "control for --no-metrics)",
    )
    parser.add_argument("--granian-path", type=Path, default=GRANIAN_DIR)
    parser.add_argument("--profile", choices=["post", "get"])
    add_common_args(parser, runs=5)
    args = parser.parse_args()
    code = Code(args.code)
    tool = args.tool
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "locust"
    pin = cpu_count() >= 2 and not args.no_pin
    api_cpus, load_cpus = ("0", "1") if pin else (None, None)
    deadline_alarm(args.runs * 2 * (args.duration + 20) + 240)

    post: list[float] = []
    get: list[float] = []
    post_core: list[float] = []
    get_core: list[float] = []
    runs: list[dict[str, object]] = []
    profile_path = None
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-") as tmp,
        process_group(Path(tmp)) as group,
    ):
        redis = group.start_redis(args)
        for pid in redis.pids:
            pin_pid(pid, load_cpus)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = service_env(code, redis.url, args)
        api = start_api(group, code, args, env, port, api_cpus)
        wait_http(f"{base_url}/readyz", proc=api, timeout_s=60)
        ids = prefill(base_url, args.prefill)
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        pids = {"api": api.pid}
        pids |= {f"redis{i}": pid for i, pid in enumerate(redis.pids)}
        if tool == "wrk":
            # Warm up both paths (script cache, pools, allocators).
            short = argparse.Namespace(**{**vars(args), "duration": 3})
            run_wrk(base_url, "post_timer.lua", short, [], load_cpus)
            run_wrk(
                base_url, "get_timer.lua", short, [str(ids_file)], load_cpus
            )
        for run in range(args.runs):
            group.check_alive()
            if tool == "wrk":
                cost = RedisCost(redis.node_urls)
                p = run_wrk(
                    base_url,
                    "post_timer.lua",
                    args,
                    [],
                    load_cpus,
                    CpuMeter(pids),
                )
                p["redis"] = cost.per(int(p.get("requests", 0)))
                g = run_wrk(
                    base_url,
                    "get_timer.lua",
                    args,
                    [str(ids_file)],
                    load_cpus,
                    CpuMeter(pids),
                )
            else:
                meter = CpuMeter(pids)
                both = run_locust(base_url, args, Path(tmp), load_cpus)
                p, g = both["post"], both["get"]
                p["cpu"] = meter.shares()
                g["cpu"] = p["cpu"]
            for r in (p, g):
                # Requests per second of API CPU: what one API process
                # would serve with a core to itself; robust to neighbours.
                # (Locust runs both kinds at once: their sum per core.)
                share = r["cpu"]["api"]
                rps = p["rps"] + g["rps"] if tool == "locust" else r["rps"]
                r["per_api_core"] = round(rps / share) if share else 0
            post.append(p["rps"])
            get.append(g["rps"])
            post_core.append(p["per_api_core"])
            get_core.append(g["per_api_core"])
            runs.append({"run": run + 1, "post": p, "get": g})
            for label, r in (("POST", p), ("GET ", g)):
                print(
                    f"run {run + 1}/{args.runs} {label} {r['rps']:>7.0f}/s "
                    f"p50 {r.get('p50_ms', '?')} ms "
                    f"p99 {r.get('p99_ms', '?')} ms "
                    f"non-2xx {r['non_2xx']}  "
                    f"{r['per_api_core']}/s per API core  cpu {r['cpu']}",
                    flush=True,
                )
            time.sleep(1)
        if args.profile and tool == "wrk":
            script = f"{args.profile}_timer.lua"
            extra = [str(ids_file)] if args.profile == "get" else []
            raw = profile_api(
                group,
                api.pid,
                base_url,
                script,
                extra,
                args,
                load_cpus,
                Path(tmp),
            )
            profile_path = BENCH_DIR / "results" / f"api-{args.profile}.txt"
            profile_path.parent.mkdir(exist_ok=True)
            shutil.copy(raw, profile_path)
        group.stop(api)
        api_log = log_summary(api.log_path)
    summary = {
        "tool": tool,
        "pinned": pin,
        "post_median_rps": round(median(post)),
        "post_redis_cpu_us": median(
            [r["post"]["redis"]["redis_cpu_us"] for r in runs]
            if tool == "wrk"
            else [float("nan")]
        ),
        "get_median_rps": round(median(get)),
        "post_best_rps": round(max(post)),
        "get_best_rps": round(max(get)),
        "post_per_api_core_median": round(median(post_core)),
        "get_per_api_core_median": round(median(get_core)),
        "non_2xx_total": sum(
            r["post"]["non_2xx"] + r["get"]["non_2xx"] for r in runs
        ),
    }
    print(
        f"\n{tool}, {args.connections} connections, {args.threads} "
        f"threads, {args.duration:g}s x {args.runs} runs, pinned={pin}, "
        f"server={args.server}, metrics={not args.no_metrics}, "
        f"code={code.commit}\n"
        f"  POST /timer       median {summary['post_median_rps']:>7}/s "
        f"best {summary['post_best_rps']:>7}/s  per API core "
        f"{summary['post_per_api_core_median']:>7}/s (target >= 10000)\n"
        f"  GET /timer/{{id}}  median {summary['get_median_rps']:>7}/s "
        f"best {summary['get_best_rps']:>7}/s  per API core "
        f"{summary['get_per_api_core_median']:>7}/s (target >= 14000)"
    )
    save_report(
        "api_load",
        args,
        code,
        summary,
        runs,
        settings=code.effective(env),
        api_log=api_log,
    )
    if profile_path:
        print(f"profile (py-spy raw) in {profile_path}:")
        subprocess.run(
            [
                sys.executable,
                str(BENCH_DIR / "profile_top.py"),
                str(profile_path),
                "-n",
                "30",
            ],
            check=False,
        )


if __name__ == "__main__":
    main()
