"""Recycled chunk buffers: an array's memory returns to the pool only when no view of it is left, and comes back
for the next chunk of about its size."""

from __future__ import annotations

import threading

import numpy as np

from streamgd.data.chunk_buffers import MIN_POOLED_BYTES, ChunkBufferPool

SHAPE = (65_536, 8)  # 2 MiB of float32


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def streaming_pool(keep: int) -> ChunkBufferPool:
    pool = ChunkBufferPool(keep=keep)
    pool.open_stream()  # as if a stream were open all along
    return pool


def test_an_array_is_like_np_empty_and_its_memory_is_reused_once_it_is_gone():
    pool = streaming_pool(keep=4)
    X = pool.empty(SHAPE, np.float32, order="F")
    assert X.shape == SHAPE and X.dtype == np.float32 and X.flags.f_contiguous and X.flags.writeable
    X[:, 3] = np.arange(SHAPE[0])
    assert X[12_345, 3] == 12_345 and X.sum() == X[:, 3].sum()  # the other columns are the map's zeros
    first = address(X)
    del X
    assert pool.free_bytes >= 2 * 2**20
    Y = pool.empty(SHAPE, np.float32, order="F")
    assert address(Y) == first and (pool.mapped, pool.reused) == (1, 1) and pool.free_bytes == 0


def test_a_view_still_alive_keeps_its_memory_out_of_the_pool():
    pool = streaming_pool(keep=4)
    X = pool.empty(SHAPE, np.float64)
    X[:] = 7.0
    column = X[:, 5]
    del X
    Y = pool.empty(SHAPE, np.float64)  # the first map is still someone's: a new one
    Y[:] = -1.0
    assert pool.mapped == 2 and np.all(column == 7.0)
    del column
    Z = pool.empty(SHAPE, np.float64)
    assert pool.reused == 1 and np.all(Z == 7.0)  # the first map again (uninitialized, as np.empty)
    assert np.array_equal(pool.zeros(SHAPE, np.float64), np.zeros(SHAPE))


def test_small_arrays_are_left_to_malloc_and_sizes_far_apart_get_their_own_maps():
    pool = streaming_pool(keep=4)
    small = pool.empty((MIN_POOLED_BYTES // 8 - 1,), np.float64)
    assert small.flags.owndata and pool.mapped == 0
    big = pool.empty((4 * MIN_POOLED_BYTES,), np.uint8)
    del big
    half = pool.empty((2 * MIN_POOLED_BYTES,), np.uint8)  # fits, within twice its size: reused
    quarter = pool.empty((MIN_POOLED_BYTES,), np.uint8)  # the big map is taken; a new one
    assert pool.reused == 1 and pool.mapped == 2 and half.nbytes + quarter.nbytes == 3 * MIN_POOLED_BYTES


def test_at_most_keep_free_maps_are_held_and_the_last_stream_drops_them():
    pool = streaming_pool(keep=2)
    arrays = [pool.empty(SHAPE, np.float32) for _ in range(5)]
    del arrays
    assert pool.free_bytes == 2 * SHAPE[0] * SHAPE[1] * 4
    pool.close_stream()
    assert pool.free_bytes == 0


def test_arrays_made_on_one_thread_and_dropped_on_another_come_back():
    pool = streaming_pool(keep=8)
    handed: list[np.ndarray] = []

    def produce():
        for i in range(50):
            X = pool.empty(SHAPE, np.float32)
            X[:] = i
            handed.append(X)

    for _ in range(4):
        thread = threading.Thread(target=produce)
        thread.start()
        thread.join()
        # every live array has memory of its own
        assert [float(X[0, 0]) for X in handed] == list(range(50)) and len(set(map(address, handed))) == 50
        assert all(np.all(X == X[0, 0]) for X in handed)
        handed.clear()  # the consumer lets go: 8 maps kept, the rest unmapped
    assert (pool.mapped, pool.reused) == (50 + 3 * 42, 3 * 8) and pool.free_bytes == 8 * 2 * 2**20


def test_the_free_maps_go_when_the_last_stream_ends(tmp_path):
    from streamgd import open_dataset
    from streamgd.data.chunk_buffers import CHUNK_BUFFERS
    from streamgd.data.reader import iter_chunks
    from streamgd.data.shuffle import make_plan
    from streamgd.bench.synthetic import make_dataset

    path = str(tmp_path / "d.parquet")
    make_dataset(path, n_rows=200_000, n_features=8, row_group_size=50_000, seed=1)
    data = open_dataset(path, target="y")
    before = CHUNK_BUFFERS.reused
    outer = iter_chunks(data, make_plan(data.units, "row-groups", seed=0))
    first = next(outer)
    rows = sum(chunk.n_rows for chunk in iter_chunks(data, make_plan(data.units, "row-groups", seed=1)))
    assert rows == 200_000 and CHUNK_BUFFERS.reused > before  # 1.6 MB blocks, recycled within the inner stream
    assert CHUNK_BUFFERS.free_bytes > 0  # the outer stream is still open: the free maps stay
    del first
    assert sum(chunk.n_rows for chunk in outer) == 150_000
    assert CHUNK_BUFFERS.free_bytes == 0


def test_outside_any_stream_memory_given_back_is_unmapped():
    pool = ChunkBufferPool(keep=4)
    X = pool.empty(SHAPE, np.float32)
    del X
    assert pool.free_bytes == 0
