"""``/compare/issues`` after its first build, on two existing runs (e.g. bench_scale's 1M-row pair): each
run's dataset issues stored (scored here if missing, timed), then a new ``serve --compare`` app's first
request (the stored issues read back) and 30 more, p50/p95 wall and CPU ms.

    PYTHONPATH=src:tests python benchmarks/bench_compare_issues.py RUN_A RUN_B

(bench_scale's compare step times the same page with the stored issues cleared first: the first build.)
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import TOKEN, get_timed, load, percentiles
from fastapi.testclient import TestClient
from mikata.analysis import issues_cache
from mikata.analysis.view import RunView
from mikata.server import create_app

run, run_b = Path(sys.argv[1]), Path(sys.argv[2])
for r in (run, run_b):
    if not issues_cache.path_for(r).is_file():
        t, c = time.perf_counter(), time.process_time()
        RunView(r).issues()
        print(f"{r.name}: issues scored and stored in {time.perf_counter()-t:.1f} s wall, {time.process_time()-c:.1f} s CPU, load {load()}", flush=True)
app = create_app(run, token=TOKEN, port=8765, compare=run_b)
client = TestClient(app, base_url="http://127.0.0.1:8765", headers={"authorization": f"token {TOKEN}"})
app.run.overview()
app.run.compare.comparison()
t, c = time.perf_counter(), time.process_time()
r = client.get("/compare/issues")
assert r.status_code == 200, r.text[:300]
print(f"first /compare/issues in a new app (stored issues read): {time.perf_counter()-t:.2f} s wall, {time.process_time()-c:.2f} s CPU", flush=True)
times, cpu = [], []
for _ in range(30):
    assert get_timed(client, "/compare/issues", times, cpu).status_code == 200
print("/compare/issues p50/p95 wall ms, p50/p95 CPU ms:", percentiles(times, cpu), "load", load())
app.run.close()
