/* snapfile.c: the names and attributes of the mount's snapshot files. A
 * snapshot NAME of volume VOL shows as the read-only file VOL@NAME ('@' is
 * in no volume or snapshot name, so the first '@' splits a file name);
 * its attributes are the volume's, but for its id, its creation time and
 * its preserved data. Pure: no state, any thread.
 */
#include <stdio.h>
#include <string.h>

#include "fused.h"
#include "util.h"

/* The name of v's file in the mount: the volume's name, or VOL@NAME for a
 * snapshot; written into buf (FUSED_NAME_MAX + 1 bytes), returned. */
char *snapfile_name(const struct volume_attr *v, char *buf)
{
	if (v->snap_id)
		snprintf(buf, FUSED_NAME_MAX + 1, "%s@%s", v->name, v->snap);
	else
		snprintf(buf, FUSED_NAME_MAX + 1, "%s", v->name);
	return buf;
}

/* Splits a file name of the mount into the volume's name and the
 * snapshot's (vol and snap: PV_MAX_NAME + 1 bytes each). Returns 0 for a
 * volume's file (snap ""), 1 for a snapshot's, -1 for a name that can be
 * neither (empty or too long on either side of the '@', a second '@'). */
int snapfile_split(const char *file, char *vol, char *snap)
{
	const char *at = strchr(file, '@');
	size_t n = at ? (size_t)(at - file) : strlen(file);

	if (n == 0 || n > PV_MAX_NAME)
		return -1;
	memcpy(vol, file, n);
	vol[n] = '\0';
	snap[0] = '\0';
	if (!at)
		return 0;
	file = at + 1;
	n = strlen(file);
	if (n == 0 || n > PV_MAX_NAME || strchr(file, '@'))
		return -1;
	memcpy(snap, file, n + 1);
	return 1;
}

/* Fills *out with the attributes of snapshot si of volume vol (the
 * volume's own attributes): 0, or -1 with the reason in err for a snapshot
 * the catalog should not hold (an invalid name, id 0). */
int snapfile_attr(const struct volume_attr *vol, const Pv__SnapshotInfo *si,
		  struct volume_attr *out, char *err, size_t errlen)
{
	if (!pv_valid_name(si->name, err, errlen))
		return -1;
	if (!si->id) {
		snprintf(err, errlen, "snapshot '%s' has id 0", si->name);
		return -1;
	}
	*out = *vol;
	snprintf(out->snap, sizeof(out->snap), "%s", si->name);
	out->snap_id = si->id;
	out->created = si->created;
	out->allocated = si->preserved;
	return 0;
}
