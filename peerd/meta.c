/* meta.c: the only file that touches LMDB. One environment per server under
 * DATA/meta, with named databases:
 *   "config"  : server settings that must survive restarts (server id)
 *   "catalog" : key "catalog" -> encoded pv.Catalog (committed)
 *   "routes"  : volume name -> encoded pv.RoutingTable
 * Every update is one write transaction. Reactor thread only. */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "peerd.h"

static MDB_env *env;

/* Allocates len bytes past the last page of the LMDB file (KEEP_SIZE: LMDB
 * sees no change). LMDB writes new pages there, growing the file: a commit
 * writes into space allocated before it. 0, or an errno. */
static int preallocate(off_t len)
{
	MDB_envinfo info;
	MDB_stat st;
	off_t end;
	int fd;

	if (mdb_env_info(env, &info) || mdb_env_stat(env, &st) || mdb_env_get_fd(env, &fd))
		return EIO;
	end = (off_t)(info.me_last_pgno + 1) * st.ms_psize;
	return fallocate(fd, FALLOC_FL_KEEP_SIZE, end, len) == 0 ? 0 : errno;
}

int meta_open(const char *data_dir)
{
	char path[PATH_MAX + 16];
	int rc;

	snprintf(path, sizeof(path), "%s/meta", data_dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		pv_err("cannot create metadata directory %s: %m", path);
		return -1;
	}
	rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_maxdbs(env, 16);
	if (!rc)
		rc = mdb_env_set_mapsize(env, (size_t)1 << 32);
	if (!rc)
		rc = mdb_env_open(env, path, 0, 0600);
	if (rc) {
		pv_err("cannot open metadata database %s: %s", path, mdb_strerror(rc));
		if (env)
			mdb_env_close(env);
		env = NULL;
		return -1;
	}
	preallocate(META_RESERVE); /* meta_reserve: room for catalog changes */
	return 0;
}

void meta_close(void)
{
	if (env)
		mdb_env_close(env);
	env = NULL;
}

int meta_get(const char *db, const char *key, void **val, size_t *len)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v;
	int rc;

	*val = NULL;
	*len = 0;
	rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		pv_err("metadata read of %s/%s failed: %s", db, key, mdb_strerror(rc));
		return -1;
	}
	rc = mdb_dbi_open(txn, db, 0, &dbi);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return 1;
	}
	if (!rc)
		rc = mdb_get(txn, dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return 1;
	}
	if (rc) {
		pv_err("metadata read of %s/%s failed: %s", db, key, mdb_strerror(rc));
		mdb_txn_abort(txn);
		return -1;
	}
	*val = malloc(v.mv_size ? v.mv_size : 1);
	if (!*val) {
		mdb_txn_abort(txn);
		return -1;
	}
	memcpy(*val, v.mv_data, v.mv_size);
	*len = v.mv_size;
	mdb_txn_abort(txn);
	return 0;
}

static int put_one(MDB_txn *txn, const char *db, const char *key, const void *val, size_t len)
{
	MDB_dbi dbi;
	MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
	int rc;

	rc = mdb_dbi_open(txn, db, MDB_CREATE, &dbi);
	if (rc)
		return rc;
	if (val)
		return mdb_put(txn, dbi, &k, &v, 0);
	rc = mdb_del(txn, dbi, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* What an admin can do about a failed write (rc from LMDB). */
static const char *advice(int rc)
{
	if (rc == ENOSPC || rc == EDQUOT)
		return " (the data directory's file system is full: free space there)";
	if (rc == MDB_MAP_FULL)
		return " (the metadata database reached its 4 GiB map size)";
	return "";
}

int meta_put(const char *db, const char *key, const void *val, size_t len)
{
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc)
		goto fail;
	rc = put_one(txn, db, key, val, len);
	if (rc) {
		mdb_txn_abort(txn);
		goto fail;
	}
	rc = mdb_txn_commit(txn); /* on failure, the transaction is freed */
	if (!rc)
		return 0;
fail:
	pv_err("metadata write of %s/%s failed: %s%s", db, key, mdb_strerror(rc), advice(rc));
	return -1;
}

static int put_routes(MDB_txn *txn, const struct volume *v)
{
	Pv__RoutingTable rt = PV__ROUTING_TABLE__INIT;
	uint8_t *buf;
	size_t n;
	int rc;

	rt.volume = (char *)v->name;
	rt.volume_id = v->id;
	rt.n_owner = v->npages;
	rt.owner = v->owner;
	/* the initial layout: every epoch 0 (none stored); pages moved later
	 * have entries of their own ("route_pages", meta_put_route) */
	n = pv__routing_table__get_packed_size(&rt);
	buf = malloc(n ? n : 1);
	if (!buf)
		return ENOMEM;
	pv__routing_table__pack(&rt, buf);
	rc = put_one(txn, "routes", v->name, buf, n);
	free(buf);
	return rc;
}

int meta_put_many(const struct meta_kv *kv, size_t n)
{
	MDB_txn *txn = NULL;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	int begun = rc == 0;

	for (size_t i = 0; !rc && i < n; i++)
		rc = put_one(txn, kv[i].db, kv[i].key, kv[i].val, kv[i].len);
	if (rc && begun)
		mdb_txn_abort(txn);
	else if (!rc)
		rc = mdb_txn_commit(txn);
	if (!rc)
		return 0;
	pv_err("metadata write of %zu record(s) (%s/%s...) failed: %s%s", n, n ? kv[0].db : "",
	       n ? kv[0].key : "", mdb_strerror(rc), advice(rc));
	return -1;
}

int meta_each(const char *db,
	      int (*fn)(void *arg, const char *key, size_t klen, const void *val, size_t vlen),
	      void *arg)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);

	if (rc) {
		pv_err("metadata read of %s failed: %s", db, mdb_strerror(rc));
		return -1;
	}
	rc = mdb_dbi_open(txn, db, 0, &dbi);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return 0; /* nothing written yet */
	}
	if (!rc)
		rc = mdb_cursor_open(txn, dbi, &cur);
	for (int op = MDB_FIRST; !rc; op = MDB_NEXT) {
		rc = mdb_cursor_get(cur, &k, &v, op);
		if (!rc && fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size))
			break;
	}
	if (cur)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	if (rc && rc != MDB_NOTFOUND) {
		pv_err("metadata read of %s failed: %s", db, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int meta_put_catalog(const void *cat, size_t cat_len, struct volume *const *vols, size_t nvols,
		     const char *const *removed, size_t nremoved)
{
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc)
		goto fail;
	rc = put_one(txn, "catalog", "catalog", cat, cat_len);
	for (size_t i = 0; !rc && i < nvols; i++)
		rc = put_routes(txn, vols[i]);
	for (size_t i = 0; !rc && i < nremoved; i++)
		rc = put_one(txn, "routes", removed[i], NULL, 0);
	if (rc) {
		mdb_txn_abort(txn);
		goto fail;
	}
	rc = mdb_txn_commit(txn);
	if (!rc) {
		preallocate(META_RESERVE); /* for the next change; may fail on a full disk */
		return 0;
	}
fail:
	pv_err("metadata write of the catalog failed: %s%s; the change is not recorded here",
	       mdb_strerror(rc), advice(rc));
	return -1;
}

int meta_reserve(int frees, char *err, size_t errlen)
{
	int rc = preallocate(META_RESERVE);

	/* space allocated before (meta_open, every commit) needs no new
	 * blocks: a change that frees space (deletes) still fits on a full
	 * disk in what is left of it */
	if ((rc == ENOSPC || rc == EDQUOT) && frees)
		rc = preallocate(META_RESERVE_MIN);
	if (rc == EOPNOTSUPP) /* no preallocation here: free space is all we know */
		rc = store_free() >= META_RESERVE ? 0 : ENOSPC;
	if (!rc)
		return 0;
	snprintf(err, errlen,
		 "server %u cannot record a catalog change: %s in %s%s; nothing was changed",
		 srv->cfg.id, rc == ENOSPC ? "no space left" : strerror(rc), srv->cfg.data_dir,
		 rc == ENOSPC || rc == EDQUOT
		     ? " (its file system is full: free space there, or delete a volume)"
		     : "");
	return -1;
}
