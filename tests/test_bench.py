"""The benchmark command runs and reports every figure (its numbers are not asserted: speed
is measured by ``mbiapo bench``, never by timed unit tests)."""

from mbiapo.bench import _rates, run_bench


def test_rates_take_the_best_block_of_each_contender():
    calls = {"a": 0, "b": 0}

    def bump(name):
        def fn():
            calls[name] += 1
        return fn

    rates = _rates({"a": bump("a"), "b": bump("b")}, seconds=0.02, rounds=2, warmup=1)
    assert set(rates) == {"a", "b"} and all(r > 0 for r in rates.values())
    assert calls["a"] > 1 and calls["b"] > 1


def test_bench_reports_all_figures():
    result = run_bench(seconds=0.05, with_sb3=False, compare_size=(3, 2), dataset_rows=3000)
    for key in ("updates_per_s_direct", "updates_per_s_iterative",
                "iterative_update_cost_vs_direct", "updates_per_s_iterative_compiled",
                "iterative_update_cost_vs_direct_compiled", "act_latency_ms_direct",
                "act_latency_ms_iterative", "act_latency_ms_adam", "act_latency_ms_cem",
                "model_based_update_rate_vs_model_free_direct",
                "model_based_update_rate_vs_model_free_iterative", "act_latency_ms_mb_iterative",
                "act_latency_ms_mb_iterative_compiled", "mb_compile_seconds",
                "act_latency_ms_iterative_compiled", "mb_iterative_act_busy_vs_idle",
                "compare_seconds_3x5x2", "dataset_load_seconds_3k",
                "dataset_load_peak_vs_array_bytes_rebuilt_next", "threads_all",
                "threads_auto_idle", "threads_auto_busy", "updates_per_s_mb_direct_e5",
                "mb_direct_e5_update_rate_vs_e1", "mb_direct_e5_penalty_update_rate_vs_e1"):
        assert result[key] > 0, key
    for agent in ("mf_direct", "mb_direct"):
        for ratio in ("busy_vs_idle_auto", "busy_vs_idle_all_threads",
                      "idle_auto_vs_all_threads", "busy_auto_vs_idle_one_thread"):
            assert result[f"{agent}_{ratio}"] > 0, (agent, ratio)
