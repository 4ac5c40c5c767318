"""release_memory gives freed heap pages back to the operating system (glibc's malloc_trim)."""

import pytest

from text2token.memory import _malloc_trim, release_memory, rss_bytes


@pytest.mark.skipif(_malloc_trim() is None or rss_bytes() is None, reason="needs Linux with glibc")
def test_freed_heap_in_holes_is_returned_to_the_os():
    # 100 KB blocks stay below glibc's mmap threshold, so they live on the heap; keeping every 20th
    # leaves holes that free() alone does not give back
    blocks = [bytearray(100_000) for _ in range(3000)]
    for i, b in enumerate(blocks):
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    kept = blocks[::20]
    del blocks
    before = rss_bytes()
    assert release_memory() is True
    after = rss_bytes()
    assert before - after > 100 * 2**20, (before, after)
    assert len(kept) == 150
