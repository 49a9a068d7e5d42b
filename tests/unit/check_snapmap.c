/* check_snapmap.c: unit tests for the snapshot chunk maps (peerd/snapmap.c,
 * pure): a chunk is preserved once per snapshot; a snapshot's image
 * resolves through newer snapshots to the volume; deleting a snapshot hands
 * the chunks an older one still reads through it down to that one, and only
 * those; snapmap_changed lists the chunks written between two cuts. A
 * random run checks every image against full copies taken at each cut,
 * with the copy-on-write rule of snap.c (preserve into the newest snapshot
 * on the first write after its cut). A page that moves takes its chunks
 * of every snapshot after all of them are preserved in the newest one: no
 * write copies a chunk after that, at the source or the target, and the
 * target's images of the page are the source's (move_keeps_images); the
 * MIG_SNAP layout helpers (which chunks, how much data, the length prefix)
 * are checked on their own. The global srv of peerd stays NULL. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

struct server *srv; /* defined by peerd/main.c, which is not linked here */

#define CHUNKS 200
#define SNAPS  8

/* A model volume: live[c] is chunk c's content (a number); each snapshot
 * has a chunk map and the content preserved into it. */
struct model {
	unsigned live[CHUNKS];
	struct snap_map maps[SNAPS];
	struct snap_map *list[SNAPS];
	unsigned kept[SNAPS][CHUNKS]; /* by list index */
	unsigned image[SNAPS][CHUNKS]; /* the truth: live at each cut */
	char wrote[SNAPS][CHUNKS];     /* the truth: written while i was newest */
	size_t n;
	uint64_t next_id;
};

static void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < SNAPS; i++) {
		m->maps[i].bits = calloc(snapmap_words(CHUNKS), sizeof(uint64_t));
		m->maps[i].same = calloc(snapmap_words(CHUNKS), sizeof(uint64_t));
	}
	m->next_id = 1;
}

static void model_free(struct model *m)
{
	for (size_t i = 0; i < SNAPS; i++) {
		free(m->maps[i].bits);
		free(m->maps[i].same);
	}
}

static void relist(struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		m->list[i] = &m->maps[i];
}

static void snapshot(struct model *m)
{
	struct snap_map *s = &m->maps[m->n];

	memset(s->bits, 0, snapmap_words(CHUNKS) * sizeof(uint64_t));
	memset(s->same, 0, snapmap_words(CHUNKS) * sizeof(uint64_t));
	s->id = m->next_id++;
	memcpy(m->image[m->n], m->live, sizeof(m->live));
	memset(m->wrote[m->n], 0, sizeof(m->wrote[m->n]));
	m->n++;
	relist(m);
}

/* The copy-on-write rule: preserve into the newest snapshot once (a
 * chunk a move preserved only loses its mark). */
static int write_chunk(struct model *m, uint64_t c, unsigned value)
{
	int copied = 0;

	if (m->n)
		m->wrote[m->n - 1][c] = 1;
	if (m->n && snapmap_same(m->list[m->n - 1], c))
		snapmap_set_same(m->list[m->n - 1], c, 0);
	if (m->n && !snapmap_has(m->list[m->n - 1], c)) {
		m->kept[m->n - 1][c] = m->live[c];
		snapmap_set(m->list[m->n - 1], c, 1);
		copied = 1;
	}
	m->live[c] = value;
	return copied;
}

static unsigned read_image(const struct model *m, size_t idx, uint64_t c)
{
	long from = snapmap_resolve((struct snap_map *const *)m->list, m->n, idx, c);

	return from < 0 ? m->live[c] : m->kept[from][c];
}

/* Deletes list entry gone as snap.c's drop does. */
static void delete_snapshot(struct model *m, size_t gone)
{
	for (uint64_t c = 0; c < CHUNKS; c++) {
		long heir = snapmap_heir(m->list, m->n, gone, c);
		long unmark = snapmap_heir_unmark(m->list, m->n, gone, c);

		if (unmark >= 0)
			snapmap_set_same(m->list[unmark], c, 0);
		if (gone > 0 && m->wrote[gone][c])
			m->wrote[gone - 1][c] = 1; /* its time is the older one's now */

		if (heir >= 0) {
			m->kept[heir][c] = m->kept[gone][c];
			snapmap_set(m->list[heir], c, 1);
			snapmap_set_same(m->list[heir], c, snapmap_same(m->list[gone], c));
		}
	}
	/* shift maps, kept data and truth down */
	struct snap_map tmp = m->maps[gone];

	for (size_t i = gone; i + 1 < m->n; i++) {
		m->maps[i] = m->maps[i + 1];
		memcpy(m->kept[i], m->kept[i + 1], sizeof(m->kept[i]));
		memcpy(m->image[i], m->image[i + 1], sizeof(m->image[i]));
		memcpy(m->wrote[i], m->wrote[i + 1], sizeof(m->wrote[i]));
	}
	m->maps[m->n - 1] = tmp;
	m->n--;
	relist(m);
}

/* Every snapshot's image, and what a diff between any two cuts (or a cut
 * and now) lists: exactly the chunks written between them. */
static void check_images(const struct model *m)
{
	for (size_t i = 0; i < m->n; i++)
		for (uint64_t c = 0; c < CHUNKS; c++)
			ck_assert_uint_eq(read_image(m, i, c), m->image[i][c]);
	for (size_t from = 0; from < m->n; from++)
		for (size_t to = from + 1; to <= m->n; to++)
			for (uint64_t c = 0; c < CHUNKS; c++) {
				int wrote = 0;

				for (size_t i = from; i < to; i++)
					wrote |= m->wrote[i][c];
				if (snapmap_changed(m->list, m->n, from, to, c) != wrote)
					ck_abort_msg(
					    "chunk %llu between cuts %zu and %zu: changed %d, "
					    "written %d",
					    (unsigned long long)c, from, to, !wrote, wrote);
			}
}

START_TEST(preserve_once)
{
	struct model m;

	model_init(&m);
	snapshot(&m);
	ck_assert_int_eq(write_chunk(&m, 5, 1), 1);
	ck_assert_int_eq(write_chunk(&m, 5, 2), 0); /* once per snapshot */
	ck_assert_int_eq(write_chunk(&m, 6, 3), 1);
	snapshot(&m);
	ck_assert_int_eq(write_chunk(&m, 5, 4), 1); /* again for the new one */
	ck_assert_uint_eq(read_image(&m, 0, 5), 0);
	ck_assert_uint_eq(read_image(&m, 1, 5), 2);
	ck_assert_uint_eq(read_image(&m, 0, 7), 0); /* never written: the volume */
	check_images(&m);
	model_free(&m);
}
END_TEST

START_TEST(resolve_through_newer)
{
	struct model m;

	model_init(&m);
	write_chunk(&m, 1, 10);
	snapshot(&m); /* s0: chunk 1 = 10 */
	snapshot(&m); /* s1: nothing written between: s0 reads through s1 */
	write_chunk(&m, 1, 11);
	ck_assert(!snapmap_has(m.list[0], 1));
	ck_assert(snapmap_has(m.list[1], 1));
	ck_assert_int_eq(snapmap_resolve(m.list, m.n, 0, 1), 1);
	ck_assert_uint_eq(read_image(&m, 0, 1), 10);
	ck_assert_int_eq(snapmap_resolve(m.list, m.n, 0, 2), -1);
	check_images(&m);
	model_free(&m);
}
END_TEST

START_TEST(delete_hands_down)
{
	struct model m;

	model_init(&m);
	write_chunk(&m, 1, 10);
	write_chunk(&m, 2, 20);
	snapshot(&m); /* s0 */
	write_chunk(&m, 2, 21); /* s0 keeps 2 */
	snapshot(&m);		/* s1 */
	write_chunk(&m, 1, 12); /* s1 keeps 1 (= 10), which s0 reads through it */
	write_chunk(&m, 2, 22); /* s1 keeps 2 (= 21); s0 has its own */
	/* deleting s1: chunk 1 goes to s0, chunk 2 does not */
	ck_assert_int_eq(snapmap_heir(m.list, m.n, 1, 1), 0);
	ck_assert_int_eq(snapmap_heir(m.list, m.n, 1, 2), -1);
	ck_assert_int_eq(snapmap_heir(m.list, m.n, 1, 3), -1); /* not in s1 */
	ck_assert_int_eq(snapmap_heir(m.list, m.n, 0, 2), -1); /* the oldest */
	delete_snapshot(&m, 1);
	ck_assert_uint_eq(read_image(&m, 0, 1), 10);
	ck_assert_uint_eq(read_image(&m, 0, 2), 20);
	check_images(&m);
	model_free(&m);
}
END_TEST

START_TEST(changed_between)
{
	struct model m;

	model_init(&m);
	snapshot(&m);
	write_chunk(&m, 3, 1);
	snapshot(&m);
	write_chunk(&m, 4, 1);
	/* s0 -> s1: chunk 3; s1 -> now: chunk 4; s0 -> now: both */
	ck_assert(snapmap_changed(m.list, m.n, 0, 1, 3));
	ck_assert(!snapmap_changed(m.list, m.n, 0, 1, 4));
	ck_assert(snapmap_changed(m.list, m.n, 1, 2, 4));
	ck_assert(snapmap_changed(m.list, m.n, 0, 2, 3) && snapmap_changed(m.list, m.n, 0, 2, 4));
	ck_assert(!snapmap_changed(m.list, m.n, 0, 2, 5));
	model_free(&m);
}
END_TEST

static void force_preserve(struct model *m, uint64_t c);

/* Writes, snapshots, deletes and page moves (the source's first step:
 * every chunk of the page preserved in the newest snapshot), at random;
 * images and diffs checked against the truth. */
START_TEST(random_runs)
{
	srand(7);
	for (int run = 0; run < 40; run++) {
		struct model m;

		model_init(&m);
		for (int step = 0; step < 400; step++) {
			int r = rand() % 100;

			if (r < 5 && m.n < SNAPS)
				snapshot(&m);
			else if (r < 8 && m.n)
				delete_snapshot(&m, (size_t)rand() % m.n);
			else if (r < 10 && m.n)
				for (uint64_t p = (uint64_t)(rand() % (CHUNKS / 8)), c = p * 8;
				     c < p * 8 + 8; c++)
					force_preserve(&m, c);
			else
				write_chunk(&m, (uint64_t)(rand() % CHUNKS), (unsigned)rand());
			if (step % 50 == 0)
				check_images(&m);
		}
		check_images(&m);
		model_free(&m);
	}
}
END_TEST

/* Images of snapshots of m, chunks [c0, c1) only. */
static void check_images_range(const struct model *m, uint64_t c0, uint64_t c1)
{
	for (size_t i = 0; i < m->n; i++)
		for (uint64_t c = c0; c < c1; c++)
			ck_assert_uint_eq(read_image(m, i, c), m->image[i][c]);
}

/* snap_page_export's first step: chunk c preserved in the newest
 * snapshot without a write (its content now). */
static void force_preserve(struct model *m, uint64_t c)
{
	if (m->n && !snapmap_has(m->list[m->n - 1], c)) {
		m->kept[m->n - 1][c] = m->live[c];
		snapmap_set(m->list[m->n - 1], c, 1);
		snapmap_set_same(m->list[m->n - 1], c, 1);
	}
}

START_TEST(move_keeps_images)
{
	srand(15);
	for (int run = 0; run < 40; run++) {
		struct model *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
		uint64_t c0 = 40, c1 = 72;

		model_init(a);
		model_init(b);
		for (int step = 0; step < 300; step++) {
			int r = rand() % 100;

			if (r < 6 && a->n < SNAPS)
				snapshot(a);
			else if (r < 8 && a->n)
				delete_snapshot(a, (size_t)rand() % a->n);
			else
				write_chunk(a, (uint64_t)(rand() % CHUNKS), (unsigned)rand());
		}
		if (!a->n)
			snapshot(a);
		for (uint64_t c = c0; c < c1; c++)
			force_preserve(a, c);
		check_images(a); /* preserving early changes no image */
		/* the target takes the page: data, and per snapshot bits and
		 * chunks (MIG_SNAP); its truth is the source's */
		for (size_t i = 0; i < a->n; i++) {
			b->maps[i].id = a->maps[i].id;
			for (uint64_t c = c0; c < c1; c++) {
				snapmap_set(&b->maps[i], c, snapmap_has(&a->maps[i], c));
				snapmap_set_same(&b->maps[i], c, snapmap_same(&a->maps[i], c));
				b->kept[i][c] = a->kept[i][c];
				b->image[i][c] = a->image[i][c];
			}
		}
		b->n = a->n;
		b->next_id = a->next_id;
		relist(b);
		for (uint64_t c = c0; c < c1; c++)
			b->live[c] = a->live[c];
		check_images_range(b, c0, c1);
		/* preserved early, not written: no diff lists them (a chunk
		 * written since the newest cut still is listed) */
		for (uint64_t c = c0; c < c1; c++)
			ck_assert_int_eq(snapmap_changed(b->list, b->n, b->n - 1, b->n, c),
					 snapmap_has(b->list[b->n - 1], c) &&
					     !snapmap_same(b->list[b->n - 1], c));
		/* writes to the page copy nothing, at either side, even after
		 * a snapshot is dropped at both */
		for (int step = 0; step < 200; step++) {
			uint64_t c = c0 + (uint64_t)(rand() % (int)(c1 - c0));
			unsigned v = (unsigned)rand();

			if (step == 100 && b->n > 1) {
				size_t gone = (size_t)rand() % b->n;

				delete_snapshot(a, gone);
				delete_snapshot(b, gone);
			}
			ck_assert_int_eq(write_chunk(a, c, v), 0);
			ck_assert_int_eq(write_chunk(b, c, v), 0);
		}
		check_images_range(b, c0, c1);
		/* a chunk written since is listed as changed since the newest
		 * cut, one not written is not */
		for (uint64_t c = c0; c < c1; c++)
			if (snapmap_has(b->list[b->n - 1], c))
				ck_assert_int_eq(snapmap_changed(b->list, b->n, b->n - 1, b->n, c),
						 !snapmap_same(b->list[b->n - 1], c));
		/* later snapshots at the target work as ever */
		if (b->n < SNAPS) {
			snapshot(b);
			ck_assert_int_eq(write_chunk(b, c0, 1), 1);
			check_images_range(b, c0, c1);
		}
		model_free(a);
		model_free(b);
		free(a);
		free(b);
	}
}
END_TEST

START_TEST(page_chunks)
{
	uint64_t first, n;

	ck_assert_int_eq(snapmap_page_chunks(4 << 20, 4 << 20, 64 << 10, &first, &n), 0);
	ck_assert_uint_eq(first, 64);
	ck_assert_uint_eq(n, 64);
	/* the volume's last page, cut short: its last chunk too */
	ck_assert_int_eq(snapmap_page_chunks(1 << 20, 100000, 65536, &first, &n), 0);
	ck_assert_uint_eq(first, 16);
	ck_assert_uint_eq(n, 2);
	/* a page not on a chunk boundary: chunks would straddle pages */
	ck_assert_int_eq(snapmap_page_chunks(96 << 10, 96 << 10, 64 << 10, &first, &n), -1);
	ck_assert_int_eq(snapmap_page_chunks(0, 4096, 0, &first, &n), -1);
}
END_TEST

/* A new volume's chunk divides its page, whatever the page size. */
START_TEST(chunk_for_page)
{
	ck_assert_uint_eq(snapmap_chunk_for(1 << 20), 64 << 10);
	ck_assert_uint_eq(snapmap_chunk_for(64 << 10), 64 << 10);
	ck_assert_uint_eq(snapmap_chunk_for(96 << 10), 32 << 10);
	ck_assert_uint_eq(snapmap_chunk_for(68 << 10), 4 << 10);
	ck_assert_uint_eq(snapmap_chunk_for(3u << 29), 64 << 10);
	/* not a multiple of 4 KiB: the default, straddling pages */
	ck_assert_uint_eq(snapmap_chunk_for(66048), 64 << 10);
	for (uint32_t page = 64 << 10; page <= (2u << 20); page += 4096) {
		uint32_t c = snapmap_chunk_for(page);

		ck_assert_uint_eq(page % c, 0);
		ck_assert(c >= SNAP_CHUNK_MIN && c <= SNAP_CHUNK_DEFAULT && !(c & (c - 1)));
		ck_assert(c == SNAP_CHUNK_DEFAULT || page % (2 * c));
	}
}
END_TEST

/* Walking a page by snapmap_seg_len visits every byte once, each piece in
 * one chunk, also when chunks straddle pages. */
START_TEST(seg_walk)
{
	static const uint64_t pages[] = {96 << 10, 66048, 1 << 20, 100000};

	for (size_t k = 0; k < sizeof(pages) / sizeof(pages[0]); k++)
		for (uint64_t p = 0; p < 5; p++) {
			uint64_t start = p * pages[k], end = start + pages[k], len, sum = 0;

			for (uint64_t off = start; off < end; off += len) {
				len = snapmap_seg_len(off, end, 64 << 10);
				ck_assert(len > 0);
				ck_assert_uint_eq(off / (64 << 10), (off + len - 1) / (64 << 10));
				sum += len;
			}
			ck_assert_uint_eq(sum, pages[k]);
		}
	/* the second 96 KiB page: 96..128 KiB of chunk 1, 128..192 KiB of 2 */
	ck_assert_uint_eq(snapmap_seg_len(96 << 10, 192 << 10, 64 << 10), 32 << 10);
	ck_assert_uint_eq(snapmap_seg_len(128 << 10, 192 << 10, 64 << 10), 64 << 10);
}
END_TEST

START_TEST(page_data)
{
	uint8_t pres[2] = {0}, holes[2] = {0};

	/* chunks 0, 2 (a hole), 3 and 9 (the last, 100000 - 9 * 10000 bytes)
	 * preserved in a page of 100000 bytes of 10000-byte chunks */
	snapmap_bit_set(pres, 0);
	snapmap_bit_set(pres, 2);
	snapmap_bit_set(pres, 3);
	snapmap_bit_set(pres, 9);
	snapmap_bit_set(holes, 2);
	snapmap_bit_set(holes, 5); /* a hole bit without preserved: no data */
	ck_assert_int_eq(snapmap_bit(pres, 9), 1);
	ck_assert_int_eq(snapmap_bit(pres, 8), 0);
	ck_assert_uint_eq(pres[1], 0x02);
	ck_assert_uint_eq(snapmap_page_data(pres, holes, 0, 10, 100000, 10000), 30000);
	ck_assert_uint_eq(snapmap_page_data(pres, holes, 0, 10, 95000, 10000), 25000);
	ck_assert_uint_eq(snapmap_page_data(pres, holes, 1, 3, 100000, 10000), 10000);
	ck_assert_uint_eq(snapmap_page_data(pres, holes, 4, 5, 100000, 10000), 0);
}
END_TEST

START_TEST(check_record)
{
	Pv__MigrationSnap r = PV__MIGRATION_SNAP__INIT;
	uint8_t pres[1] = {0x05}, holes[1] = {0x04}, same[1] = {0}; /* chunks 0, 2 (a hole) */
	uint64_t snap_ids[SNAP_MAX + 1] = {0}, n = 0;

	/* a page of 4 chunks of 64 KiB at 1 MiB: chunk 0's data only */
	r.chunk_size = 65536;
	r.preserved.len = r.holes.len = r.same.len = 1;
	r.preserved.data = pres;
	r.holes.data = holes;
	r.same.data = same;
	r.first = 0;
	r.count = 4;
	r.n_snap_ids = 2;
	r.snap_ids = snap_ids;
	ck_assert_int_eq(snapmap_check(&r, 65536, 1 << 20, 4 * 65536, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(snapmap_check(&r, 65535, 1 << 20, 4 * 65536, &n), -1); /* data short */
	ck_assert_int_eq(snapmap_check(&r, 65536, 1 << 20, 9 * 65536, &n), -1); /* bitmaps */
	ck_assert_int_eq(snapmap_check(&r, 65536, 3 << 15, 4 * 65536, &n), -1); /* straddles */
	r.first = 3;
	r.count = 2; /* past the page's chunks */
	ck_assert_int_eq(snapmap_check(&r, 0, 1 << 20, 4 * 65536, &n), -1);
	r.count = 1;
	ck_assert_int_eq(snapmap_check(&r, 0, 1 << 20, 4 * 65536, &n), 0);
	r.n_snap_ids = SNAP_MAX + 1;
	ck_assert_int_eq(snapmap_check(&r, 0, 1 << 20, 4 * 65536, &n), -1);
	r.n_snap_ids = 1;
	r.chunk_size = 1000; /* not a multiple of 512 */
	ck_assert_int_eq(snapmap_check(&r, 0, 1 << 20, 4 * 65536, &n), -1);
	r.chunk_size = 0;
	ck_assert_int_eq(snapmap_check(&r, 0, 1 << 20, 4 * 65536, &n), -1);
}
END_TEST

START_TEST(frame_split)
{
	uint8_t buf[16] = {0};
	const uint8_t *rec, *data;
	size_t rl, dl;

	snapmap_frame_put(buf, 5);
	ck_assert_uint_eq(buf[0], 5);
	ck_assert_uint_eq(buf[3], 0);
	ck_assert_int_eq(snapmap_frame_split(buf, 16, &rec, &rl, &data, &dl), 0);
	ck_assert_ptr_eq(rec, buf + 4);
	ck_assert_uint_eq(rl, 5);
	ck_assert_ptr_eq(data, buf + 9);
	ck_assert_uint_eq(dl, 7);
	ck_assert_int_eq(snapmap_frame_split(buf, 9, &rec, &rl, &data, &dl), 0);
	ck_assert_uint_eq(dl, 0);
	/* the record runs past the end, is empty, or there is no prefix */
	ck_assert_int_eq(snapmap_frame_split(buf, 8, &rec, &rl, &data, &dl), -1);
	ck_assert_int_eq(snapmap_frame_split(buf, 3, &rec, &rl, &data, &dl), -1);
	ck_assert_int_eq(snapmap_frame_split(NULL, 0, &rec, &rl, &data, &dl), -1);
	snapmap_frame_put(buf, 0);
	ck_assert_int_eq(snapmap_frame_split(buf, 16, &rec, &rl, &data, &dl), -1);
	snapmap_frame_put(buf, 0xffffffffu);
	ck_assert_uint_eq(buf[3], 0xff);
	ck_assert_int_eq(snapmap_frame_split(buf, 16, &rec, &rl, &data, &dl), -1);
}
END_TEST

static Suite *snapmap_suite(void)
{
	Suite *s = suite_create("snapmap");
	TCase *tc = tcase_create("chunks");

	tcase_add_test(tc, preserve_once);
	tcase_add_test(tc, resolve_through_newer);
	tcase_add_test(tc, delete_hands_down);
	tcase_add_test(tc, changed_between);
	tcase_add_test(tc, random_runs);
	tcase_add_test(tc, move_keeps_images);
	tcase_add_test(tc, page_chunks);
	tcase_add_test(tc, chunk_for_page);
	tcase_add_test(tc, seg_walk);
	tcase_add_test(tc, page_data);
	tcase_add_test(tc, check_record);
	tcase_add_test(tc, frame_split);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(snapmap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
