"""calibrate.py's measurements, small and fast: RAM read bandwidth with
threads, the file's cold reads (O_DIRECT) by size and readers, and the
two-run solve for the kernels' read rate and per-layer overhead."""
import pytest

from shimmy_py.calibrate import file_bandwidth, ram_bandwidth, solve_decode


def test_ram_and_file_reads_are_measured_as_bytes_per_second(tmp_path):
    assert ram_bandwidth(1, mib=16, rounds=1) > 1e8          # any machine reads RAM faster than 100 MB/s
    path = tmp_path / "data.bin"
    path.write_bytes(b"\7" * (8 << 20))
    small, big = file_bandwidth(str(path), 4096, 1, seconds=0.1), file_bandwidth(str(path), 1 << 20, 2, seconds=0.1)
    cached = file_bandwidth(str(path), 1 << 20, 8, seconds=0.1, direct=False)      # as the streamer's readers read
    assert small > 0 and big > 0 and cached > 0


def test_a_file_too_small_for_the_request_size_is_named():
    from shimmy_py.errors import PlacementError
    with pytest.raises(PlacementError, match="too small"):
        file_bandwidth(__file__, 8 << 20, 1, seconds=0.01)


def test_two_runs_give_the_read_rate_and_the_per_layer_overhead():
    rate, overhead = 10e9, 2e-4                                # a machine stated, two models run on it
    runs = [(b / rate + layers * overhead, b, layers) for b, layers in ((5e6, 3), (3e8, 6))]
    got_rate, got_overhead = solve_decode(*runs)
    assert got_rate == pytest.approx(rate) and got_overhead == pytest.approx(overhead)
    # noise that makes the overhead negative: the small model's time is taken as overhead alone
    r, o = solve_decode((1e-5, 5e6, 3), (1e-3, 3e8, 6))
    assert o == pytest.approx(1e-5 / 3) and r == pytest.approx(3e8 / (1e-3 - 6e-5 / 3))
