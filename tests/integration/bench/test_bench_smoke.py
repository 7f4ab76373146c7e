"""The bench at toy sizes: it must run end to end on the real Kafka and PostgreSQL (the
commission and referral services as separate processes) and produce a complete result whose
balances equal the bench's own recomputation. No timing is asserted: only that every figure
was measured."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[3]
TINY = ["--users", "400", "--orders", "600", "--probes", "20", "--latency-rate", "100", "--latency-seconds", "1",
        "--api-seconds", "1", "--balance-rate", "50", "--bind-rate", "20", "--timeout", "150", "--scale-orders", "300",
        "--hog-duty", "0.2"]


def test_bench_produces_a_complete_result_with_matching_balances(infra, tmp_path):
    out = tmp_path / "result.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra["kafka"], "DATABASE_URL": infra["db"]}
    r = subprocess.run([sys.executable, "-m", "bench.run", *TINY, "--json-out", str(out), "--baseline", ""],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())

    assert res["accrual"]["orders"] == 600
    assert res["accrual"]["accruals_stored"] == res["accrual"]["accruals_expected"] > 600
    assert res["accrual"]["balances"]["match"] and res["accrual"]["balances"]["mismatched"] == 0
    assert res["latency"]["balances"]["match"]
    assert res["latency"]["probes_seen"] == res["latency"]["probes"] == 20
    assert res["replay"]["equal"] and res["replay"]["events"] > 0
    for section, key in [("accrual", "orders_per_s"), ("ceiling", "produce_per_s"), ("ceiling", "consume_per_s"),
                         ("ceiling", "consume_produce_per_s"), ("replay", "events_per_s"), ("replay", "raw_consume_per_s")]:
        assert res[section][key] > 0, (section, key)
    for key in ("end_to_end", "to_committed", "to_accrued_on_log"):
        assert res["latency"][key]["n"] == 20 and res["latency"][key]["p99_ms"] > 0, key
    for api in ("api_balance", "api_bind"):
        assert res[api]["ok"] == res[api]["sent"] > 0 and not res[api]["errors"], res[api]
        assert res[api]["p50_ms"] > 0 and res[api]["p99_ms"] >= res[api]["p50_ms"]
    assert res["memory"]["peak_rss_mib"]["commission"] > 0 and res["memory"]["peak_rss_mib"]["referral"] > 0
    d = res["derived"]
    assert d["balances_match"] and d["replay_equal"]
    assert set(d["targets"]) == {"accrual_ratio", "latency_p99_ms", "latency_busy_p99_ms", "replay_ratio", "balance_p99_ms",
                                 "bind_p99_ms", "scale_2_vs_1"}
    assert res["latency_busy"]["balances"]["match"] and res["latency_busy"]["probes_seen"] == 20
    assert res["scale"]["processes_1"]["balances_match"] and res["scale"]["processes_2"]["balances_match"]
    assert res["ceiling"]["fanout_out_per_s"] > res["ceiling"]["fanout_in_per_s"] > 0
    s = res["summary"]
    assert set(s) == {"accrual_orders_per_s", "accrual_vs_pipe", "accrual_vs_fanout", "latency_p99_ms", "latency_busy_p99_ms",
                      "replay_vs_consume", "scale_2_vs_1", "balance_api_p99_ms", "bind_api_p99_ms", "peak_rss_mib",
                      "balances_match"}
    assert s["balances_match"] is True
    assert all(isinstance(v, (int, float)) and v > 0 for k, v in s.items() if k != "balances_match"), s
    assert all(v["value"] > 0 for v in d["targets"].values())
    assert "accrual: OrderPaid -> balances" in r.stdout  # the table was printed


def test_notices_bench_runs_its_stream_and_burst_phases(infra):
    """`python -m bench.notices` at toy sizes: every notice read off its stream, and the burst's
    every notice stored, with a rate and a same-run ratio printed."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": infra["kafka"], "DATABASE_URL": infra["db"]}
    r = subprocess.run([sys.executable, "-m", "bench.notices", "--streams", "3", "--rate", "50", "--count", "30",
                        "--warmup", "3", "--burst", "300", "--burst-promoters", "30"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "notices: 30/30 received on 3 open streams" in r.stdout, r.stdout
    assert "within 1 s:" in r.stdout
    burst = next(line for line in r.stdout.splitlines() if line.startswith("burst: 300 accruals over 30 promoters"))
    rate = float(burst.split("every notice stored in ")[1].split(" = ")[1].split("/s")[0].replace(",", ""))
    ratio = float(burst.rsplit("ratio ", 1)[1])
    assert rate > 0 and 0 < ratio, burst
