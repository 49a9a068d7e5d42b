/* snapmap.c: the pure logic of snapshot chunk maps (snap.c keeps them; unit
 * tests in tests/unit/check_snapmap.c). A volume's snapshots on one server
 * are a list, oldest first; each has a bit per chunk of the volume, set
 * when the chunk was preserved into it: the chunk's content at that
 * snapshot's cut, saved by the first write or TRIM to it while that
 * snapshot was the newest.
 *
 * So a chunk not preserved in a snapshot did not change from its cut to
 * the next snapshot's: its content is the next snapshot's, and so on up to
 * the volume itself. No state here: no locks, no files.
 *
 * A page that moves takes its chunks of every snapshot with it (MIG_SNAP,
 * migrate.c): a byte bitmap per snapshot of the chunks preserved, of those
 * preserved as holes and of those a move preserved, then the data of the
 * ones with data, in chunk order. A move first preserves every chunk of the
 * page in the newest snapshot; those are marked "same" (unchanged since its
 * cut), so no diff counts them as written, until a write clears the mark. */
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

int snapmap_same(const struct snap_map *m, uint64_t chunk)
{
	return m->same && ((m->same[chunk / 64] >> (chunk % 64)) & 1);
}

void snapmap_set_same(struct snap_map *m, uint64_t chunk, int on)
{
	if (!m->same)
		return;
	if (on)
		m->same[chunk / 64] |= 1ull << (chunk % 64);
	else
		m->same[chunk / 64] &= ~(1ull << (chunk % 64));
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

long snapmap_heir_unmark(struct snap_map *const *maps, size_t n, size_t gone, uint64_t chunk)
{
	if (gone >= n || gone == 0 || !snapmap_has(maps[gone], chunk) ||
	    snapmap_same(maps[gone], chunk))
		return -1;
	return snapmap_has(maps[gone - 1], chunk) && snapmap_same(maps[gone - 1], chunk)
		   ? (long)gone - 1
		   : -1;
}

int snapmap_changed(struct snap_map *const *maps, size_t n, size_t from, size_t to,
		    uint64_t chunk)
{
	for (size_t i = from; i < to && i < n; i++)
		if (snapmap_has(maps[i], chunk) && !snapmap_same(maps[i], chunk))
			return 1;
	return 0;
}

uint64_t snapmap_words(uint64_t nchunks)
{
	return (nchunks + 63) / 64;
}

int snapmap_page_chunks(uint64_t page_off, uint64_t page_len, uint32_t chunk, uint64_t *first,
			uint64_t *n)
{
	if (!chunk || page_off % chunk)
		return -1;
	*first = page_off / chunk;
	*n = (page_len + chunk - 1) / chunk;
	return 0;
}

uint32_t snapmap_chunk_for(uint32_t page_size)
{
	uint32_t chunk = SNAP_CHUNK_DEFAULT;

	while (chunk > SNAP_CHUNK_MIN && page_size % chunk)
		chunk /= 2;
	return page_size % chunk ? SNAP_CHUNK_DEFAULT : chunk;
}

uint64_t snapmap_seg_len(uint64_t off, uint64_t end, uint32_t chunk)
{
	uint64_t next = (off / chunk + 1) * chunk;

	return (next < end ? next : end) - off;
}

int snapmap_bit(const uint8_t *bits, uint64_t i)
{
	return (bits[i / 8] >> (i % 8)) & 1;
}

void snapmap_bit_set(uint8_t *bits, uint64_t i)
{
	bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

uint64_t snapmap_page_data(const uint8_t *preserved, const uint8_t *holes, uint64_t first,
			   uint64_t n, uint64_t page_len, uint32_t chunk)
{
	uint64_t bytes = 0;

	for (uint64_t i = first; i < first + n; i++) {
		uint64_t off = i * chunk;

		if (off >= page_len)
			break;
		if (snapmap_bit(preserved, i) && !snapmap_bit(holes, i))
			bytes += page_len - off < chunk ? page_len - off : chunk;
	}
	return bytes;
}

int snapmap_check(const Pv__MigrationSnap *r, size_t data_len, uint64_t page_off, uint64_t page_len,
		  uint64_t *nchunks)
{
	uint64_t first, n, bm;

	if (!r->chunk_size || r->chunk_size % PV_SECTOR || r->chunk_size > PV_MAX_IO ||
	    snapmap_page_chunks(page_off, page_len, r->chunk_size, &first, &n) < 0)
		return -1;
	bm = (n + 7) / 8;
	if (!n || r->preserved.len != bm || r->holes.len != bm || r->same.len != bm ||
	    r->n_snap_ids > SNAP_MAX || r->first > n || r->count > n - r->first ||
	    data_len != snapmap_page_data(r->preserved.data, r->holes.data, r->first, r->count,
					  page_len, r->chunk_size))
		return -1;
	*nchunks = n;
	return 0;
}

void snapmap_frame_put(uint8_t *out, uint32_t rec_len)
{
	for (int i = 0; i < 4; i++)
		out[i] = (uint8_t)(rec_len >> (8 * i));
}

int snapmap_frame_split(const uint8_t *p, size_t len, const uint8_t **rec, size_t *rec_len,
			const uint8_t **data, size_t *data_len)
{
	uint32_t n = 0;

	if (!p || len < 4)
		return -1;
	for (int i = 0; i < 4; i++)
		n |= (uint32_t)p[i] << (8 * i);
	if (!n || n > len - 4)
		return -1;
	*rec = p + 4;
	*rec_len = n;
	*data = p + 4 + n;
	*data_len = len - 4 - n;
	return 0;
}
