"""The benchmark runs (its numbers are printed by `python -m fcnlib.bench`, not asserted)."""

from fcnlib.bench import bench_data, main


def test_bench_data_reports_positive_rates():
    rates = bench_data(size=16, batch_size=2, n_batches=1)
    assert set(rates) >= {"single items", "batched", "DataLoader (0 workers)"}
    assert all(r > 0 for r in rates.values())


def test_cli_prints(capsys):
    main(["data", "--size", "16", "--batch-size", "2"])
    assert "images/s" in capsys.readouterr().out
