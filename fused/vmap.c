/* vmap.c: read-only mappings of a server's data files. A server on this host
 * names the data file of a volume (PV_OP_MAP_VOLUME: /proc/PID/fd/N, dev,
 * ino); fused maps it, and the server answers a READ whose bytes it holds in
 * memory with PV_F_MAP and no data: fused replies to the kernel straight from
 * the mapping. The data is copied once (the kernel's copy out of the page
 * cache into the loop device's pages) instead of twice (the server's into a
 * slot, then the kernel's out of the slot). Made and given up on the client
 * thread; a reply thread (reply.c) copying out of a mapping holds a
 * reference, so the mapping outlives a volume dropped meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fused.h"

struct vmap *vmap_open(const char *path, uint64_t dev, uint64_t ino, uint64_t size, char *err,
		       size_t errlen)
{
	struct vmap *m;
	struct stat st;
	void *base;
	int fd;

	if (!size) {
		snprintf(err, errlen, "volume of size 0");
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_dev != dev ||
	    (uint64_t)st.st_ino != ino) {
		/* another mount or pid namespace, or the descriptor was reused */
		snprintf(err, errlen, "%s is not the server's data file", path);
		close(fd);
		return NULL;
	}
	if ((uint64_t)st.st_size < size) {
		snprintf(err, errlen, "%s holds %llu bytes, the volume %llu", path,
			 (unsigned long long)st.st_size, (unsigned long long)size);
		close(fd);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	base = m ? mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	close(fd); /* the mapping keeps the file */
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "cannot map %llu bytes of %s: %s",
			 (unsigned long long)size, path, m ? strerror(errno) : "out of memory");
		free(m);
		return NULL;
	}
	/* a core dump of fused need not hold the volume */
	madvise(base, size, MADV_DONTDUMP);
	m->base = base;
	m->size = size;
	m->dev = dev;
	m->ino = ino;
	m->refs = 1;
	return m;
}

void vmap_get(struct vmap *m)
{
	__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
}

void vmap_put(struct vmap *m)
{
	if (!m || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	munmap((void *)m->base, m->size);
	free(m);
}

const void *vmap_ptr(const struct vmap *m, uint64_t offset, uint64_t length)
{
	if (!m || offset > m->size || length > m->size - offset)
		return NULL;
	return m->base + offset;
}
