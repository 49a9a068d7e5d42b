/* snapmap.c: the pure logic of snapshot chunk maps (snap.c keeps them; unit
 * tests in tests/unit/check_snapmap.c). A volume's snapshots on one server
 * are a list, oldest first; each has a bit per chunk of the volume, set
 * when the chunk was preserved into it: the chunk's content at that
 * snapshot's cut, saved by the first write or TRIM to it while that
 * snapshot was the newest.
 *
 * So a chunk not preserved in a snapshot did not change from its cut to
 * the next snapshot's: its content is the next snapshot's, and so on up to
 * the volume itself. No state here: no locks, no files. */
#include "peerd.h"

int snapmap_has(const struct snap_map *m, uint64_t chunk)
{
	return (m->bits[chunk / 64] >> (chunk % 64)) & 1;
}

void snapmap_set(struct snap_map *m, uint64_t chunk, int on)
{
	if (on)
		m->bits[chunk / 64] |= 1ull << (chunk % 64);
	else
		m->bits[chunk / 64] &= ~(1ull << (chunk % 64));
}

long snapmap_resolve(struct snap_map *const *maps, size_t n, size_t from, uint64_t chunk)
{
	for (size_t i = from; i < n; i++)
		if (snapmap_has(maps[i], chunk))
			return (long)i;
	return -1;
}

long snapmap_heir(struct snap_map *const *maps, size_t n, size_t gone, uint64_t chunk)
{
	if (gone >= n || !snapmap_has(maps[gone], chunk) || gone == 0)
		return -1;
	/* the next older snapshot read this chunk through the one going away;
	 * if it has a copy of its own, nobody else needs this one */
	return snapmap_has(maps[gone - 1], chunk) ? -1 : (long)gone - 1;
}

int snapmap_changed(struct snap_map *const *maps, size_t n, size_t from, size_t to,
		    uint64_t chunk)
{
	for (size_t i = from; i < to && i < n; i++)
		if (snapmap_has(maps[i], chunk))
			return 1;
	return 0;
}

uint64_t snapmap_words(uint64_t nchunks)
{
	return (nchunks + 63) / 64;
}
