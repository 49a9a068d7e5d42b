/* volume_admin.c: volume create and delete. Checks a command against the
 * catalog and the servers' data file systems, then runs it as a catalog change
 * (change.c): its build adds or removes the volume in the next catalog, its
 * done tells the command's starter (control.c, through its catalog_done_fn)
 * how it ended. Every member installs the volume, and computes its initial
 * routing table, when the change commits (catalog.c). Nothing here builds
 * the answer to the client. Reactor thread only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerd.h"

/* A volume command, the arg of its change. */
struct volume_arg {
	char name[PV_MAX_NAME + 1];
	uint64_t size;
	uint32_t page_size;
	uint32_t servers[PEERD_MAX_MEMBERS];
	size_t nservers;
	int force;
	int with_snapshots; /* delete: its snapshots go too */
	int why;	      /* the kind of a refusal in build: ENOENT, EEXIST or 0 */
	catalog_done_fn done; /* the starter's */
	void *done_arg;
};

/* A zeroed volume command for name, answering done(done_arg). NULL (with
 * err) if out of memory. */
static struct volume_arg *volume_arg_new(const char *name, catalog_done_fn done, void *done_arg,
					 char *err, size_t errlen)
{
	struct volume_arg *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->done = done;
	a->done_arg = done_arg;
	return a;
}

/* ---- create ---- */

static int create_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct volume_arg *a = arg;
	Pv__VolumeInfo *vi, **arr;

	for (size_t i = 0; i < next->n_volumes; i++) {
		if (!strcmp(next->volumes[i]->name, a->name)) {
			snprintf(err, errlen, "volume '%s' already exists", a->name);
			a->why = EEXIST;
			return -1;
		}
	}
	vi = malloc(sizeof(*vi));
	arr = realloc(next->volumes, (next->n_volumes + 1) * sizeof(*arr));
	if (arr)
		next->volumes = arr;
	if (!vi || !arr || !(vi->servers = malloc(PEERD_MAX_MEMBERS * sizeof(uint32_t)))) {
		free(vi);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uint32_t *servers = vi->servers;

	pv__volume_info__init(vi);
	vi->servers = servers;
	vi->name = catalog_strdup(a->name);
	vi->id = next->next_volume_id ? next->next_volume_id : 1;
	next->next_volume_id = vi->id + 1;
	vi->size = a->size;
	vi->page_size = a->page_size;
	/* chunks that are whole parts of a page (0: the default, 64 KiB) */
	if (snapmap_chunk_for(a->page_size) != SNAP_CHUNK_DEFAULT)
		vi->chunk_size = snapmap_chunk_for(a->page_size);
	vi->created = pv_wall_s();
	if (a->nservers) {
		memcpy(vi->servers, a->servers, a->nservers * sizeof(uint32_t));
		vi->n_servers = a->nservers;
	} else {
		/* every member but those being evacuated */
		for (size_t i = 0; i < next->n_members && vi->n_servers < PEERD_MAX_MEMBERS; i++)
			if (!next->members[i]->draining)
				vi->servers[vi->n_servers++] = next->members[i]->id;
	}
	next->volumes[next->n_volumes++] = vi;
	/* the layout pv_layout lays its pages over, frozen now: later weight
	 * or server changes move pages instead of changing it */
	if (!vi->n_servers || placement_freeze_layout(next, vi) < 0) {
		snprintf(err, errlen, vi->n_servers ? "out of memory" : "every member is draining");
		return -1;
	}
	return 0;
}

static void note_overcommit(const char *name, uint64_t size);

static void create_done(void *arg, int ok, const char *err)
{
	struct volume_arg *a = arg;
	struct volume *v = ok ? catalog_volume(a->name) : NULL;

	if (ok && !v) {
		ok = 0;
		err = "volume vanished after its creation";
	}
	if (ok)
		note_overcommit(a->name, a->size);
	a->done(a->done_arg, ok, v, ok ? 0 : a->why, err);
	free(a);
}

/* Volumes are thin (as in Ceph RBD): a volume takes space as it is
 * written, and the group may provision more than its servers have free.
 * Creating one that overcommits the servers it may live on is allowed and
 * logged (peerctl health shows it too); a server whose disk is full refuses
 * new volumes in the change itself (store_can_hold). */
static void note_overcommit(const char *name, uint64_t size)
{
	uint64_t room = 0, provisioned = 0;
	char a1[32], a2[32], a3[32];

	for (size_t i = 0; i < srv->nmembers; i++) {
		const struct member *m = &srv->members[i];

		room += m->bytes + (m->id == srv->cfg.id ? store_free() : m->free);
	}
	for (struct volume *v = srv->volumes; v; v = v->next)
		provisioned += v->size;
	if (provisioned > room)
		pv_warn("volume %s (%s) created: the group's volumes now provision %s, more than "
			"its servers have stored and free (%s): overcommitted (volumes are thin; "
			"writes fail on a server whose disk fills); watch 'peerctl health'",
			name, pv_format_size(size, a1, sizeof(a1)),
			pv_format_size(provisioned, a2, sizeof(a2)),
			pv_format_size(room, a3, sizeof(a3)));
}

/* Whether the listed servers are distinct members. 1, or 0 with err. */
static int servers_valid(const uint32_t *servers, size_t nservers, char *err, size_t errlen)
{
	if (nservers > PEERD_MAX_MEMBERS) {
		snprintf(err, errlen, "too many servers listed");
		return 0;
	}
	for (size_t i = 0; i < nservers; i++) {
		if (!catalog_member(servers[i])) {
			snprintf(err, errlen,
				 "server %u is not a member of the group (see 'peerctl "
				 "group show')",
				 servers[i]);
			return 0;
		}
		if (catalog_member(servers[i])->draining) {
			snprintf(err, errlen,
				 "server %u is draining (being evacuated): a new volume's pages "
				 "are not laid on it ('peerctl server evacuate %u --cancel' ends "
				 "that)",
				 servers[i], servers[i]);
			return 0;
		}
		for (size_t j = 0; j < i; j++) {
			if (servers[j] == servers[i]) {
				snprintf(err, errlen, "server %u is listed twice", servers[i]);
				return 0;
			}
		}
	}
	return 1;
}

int catalog_volume_create(const char *name, uint64_t size, uint32_t page_size,
			  const uint32_t *servers, size_t nservers, catalog_done_fn done,
			  void *done_arg, char *err, size_t errlen)
{
	struct volume_arg *a;

	if (!pv_valid_name(name, err, errlen))
		return -1;
	if (!pv_valid_volume_size(size, srv->cfg.max_volume_size, err, errlen))
		return -1;
	if (page_size == 0)
		page_size = PV_DEFAULT_PAGE_SIZE;
	if (!pv_valid_page_size(page_size, err, errlen))
		return -1;
	if (catalog_volume(name)) {
		snprintf(err, errlen, "volume '%s' already exists", name);
		return -EEXIST;
	}
	if (!servers_valid(servers, nservers, err, errlen) || !store_can_hold(size, err, errlen))
		return -1;
	a = volume_arg_new(name, done, done_arg, err, errlen);
	if (!a)
		return -1;
	a->size = size;
	a->page_size = page_size;
	if (nservers)
		memcpy(a->servers, servers, nservers * sizeof(uint32_t));
	a->nservers = nservers;
	return change_start(change_new(0, create_build, create_done, a,
				       "create volume %s of %llu bytes", name,
				       (unsigned long long)size),
			    a, err, errlen);
}

/* ---- delete ---- */

static int delete_build(void *arg, Pv__Catalog *next, char *err, size_t errlen)
{
	struct volume_arg *a = arg;
	uint32_t open;

	for (size_t i = 0; i < next->n_volumes; i++) {
		if (strcmp(next->volumes[i]->name, a->name))
			continue;
		open = clients_open_count(a->name);
		if (open && !a->force) {
			snprintf(err, errlen,
				 "volume %s is open by %u client(s) through server %u; unmount or "
				 "detach it, or use --force",
				 a->name, open, srv->cfg.id);
			return -1;
		}
		if (next->volumes[i]->n_snapshots && !a->with_snapshots) {
			snprintf(err, errlen,
				 "volume %s has %zu snapshot(s); delete them first ('peerctl "
				 "snapshot list %s'), or delete it with --with-snapshots",
				 a->name, next->volumes[i]->n_snapshots, a->name);
			return -1;
		}
		pv__volume_info__free_unpacked(next->volumes[i], NULL);
		next->volumes[i] = next->volumes[--next->n_volumes];
		return 0;
	}
	snprintf(err, errlen, "no volume '%s'", a->name);
	a->why = ENOENT;
	return -1;
}

static void delete_done(void *arg, int ok, const char *err)
{
	struct volume_arg *a = arg;

	a->done(a->done_arg, ok, NULL, ok ? 0 : a->why, err);
	free(a);
}

int catalog_volume_delete(const char *name, int force, int with_snapshots, catalog_done_fn done, void *done_arg,
			  char *err, size_t errlen)
{
	struct volume_arg *a;

	if (!catalog_volume(name)) {
		snprintf(err, errlen, "no volume '%s'", name);
		return -ENOENT;
	}
	a = volume_arg_new(name, done, done_arg, err, errlen);
	if (!a)
		return -1;
	a->force = force;
	a->with_snapshots = with_snapshots;
	return change_start(change_new(force, delete_build, delete_done, a, "delete volume %s%s",
				       name, force ? " (forced)" : ""),
			    a, err, errlen);
}
