/* SPDX-License-Identifier: MIT */
/*
 * net: the embedded allocator (no database). State in <state_dir>/ipam/:
 *   leases  an append-only journal of "A <name> <addr>\n" (assign) and "R <name>\n" (release)
 *           records, each written with one pwrite + fdatasync, compacted now and then by an
 *           atomic rewrite (temp + rename);
 *   lock    flock()ed around every operation, so several processes on one state dir never hand
 *           out an address twice (the lock file is opened per operation: a flock is tied to an
 *           open file description, which fork() would otherwise share).
 * Each process keeps the parsed journal in memory and, under the lock, reads only what others
 * appended since (or everything again when the file was replaced by a compaction).
 * A crash can leave a torn last record (no newline): it is ignored and cut off before the
 * next append. A bad complete record is corruption: refuse (-EINVAL) rather than risk a duplicate.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "ip6.h"
#include "ipam-internal.h"
#include "parse.h"

#define JOURNAL_MAX (64u << 20)	 /* refuse a journal larger than this (corruption or abuse) */
#define RECORD_MAX 128		 /* "A " + name (36) + " " + address (45) + "\n" fits */
#define COMPACT_MIN_RECORDS 4096 /* compact when records > max(this, 4 * live leases) */

struct lease {
	char name[VM_NAME_MAX + 1];
	struct in6_addr addr;
};

struct ipam_local {
	char dir[PATH_MAX], journal[PATH_MAX], lock[PATH_MAX];
	int fd; /* the journal as of dev/ino, -EBADF before the first sync */
	dev_t dev;
	ino_t ino;
	off_t consumed; /* bytes of complete records applied to leases */
	size_t records; /* records in the journal file */
	struct lease *leases;
	size_t n, cap;
	struct in6_addr *addrs; /* scratch for ipam_pick */
};

static void lock_release(int *fd)
{
	if (*fd >= 0) {
		(void)flock(*fd, LOCK_UN);
		safe_close(*fd);
	}
}

static int lock_take(struct ipam_local *l, int *ret_fd, struct err *err)
{
	int fd = open(l->lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return err_set(err, -errno, "opening %s failed", l->lock);
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			int r = -errno;

			safe_close(fd);
			return err_set(err, r, "locking %s failed", l->lock);
		}
	}
	*ret_fd = fd;
	return 0;
}

static struct lease *lease_find(struct ipam_local *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->leases[i].name, name) == 0)
			return &l->leases[i];
	return NULL;
}

static int lease_set(struct ipam_local *l, const char *name, const struct in6_addr *a)
{
	struct lease *e = lease_find(l, name);

	/* One address, one name: a journal saying otherwise was edited or is corrupt. */
	for (size_t i = 0; i < l->n; i++)
		if (&l->leases[i] != e && memcmp(&l->leases[i].addr, a, sizeof(*a)) == 0)
			return -EINVAL;

	if (!e) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 64;
			struct lease *p = realloc(l->leases, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			l->leases = p;
			l->cap = cap;
		}
		e = &l->leases[l->n++];
		(void)snprintf(e->name, sizeof(e->name), "%s", name);
	}
	e->addr = *a;
	return 0;
}

static void lease_drop(struct ipam_local *l, const char *name)
{
	struct lease *e = lease_find(l, name);

	if (e)
		*e = l->leases[--l->n];
}

/* Apply one record (without its newline). */
static int record_apply(struct ipam_local *l, char *rec)
{
	char *name, *addr;
	struct in6_addr a;

	if (rec[0] == 'A' && rec[1] == ' ') {
		name = rec + 2;
		addr = strchr(name, ' ');
		if (!addr)
			return -EINVAL;
		*addr++ = '\0';
		if (!vm_name_is_valid(name) || ip6_addr_parse(addr, &a) < 0)
			return -EINVAL;
		return lease_set(l, name, &a);
	}
	if (rec[0] == 'R' && rec[1] == ' ') {
		if (!vm_name_is_valid(rec + 2))
			return -EINVAL;
		lease_drop(l, rec + 2);
		return 0;
	}
	return -EINVAL;
}

static int journal_reopen(struct ipam_local *l, struct err *err)
{
	struct stat st;

	l->fd = safe_close(l->fd);
	l->n = 0;
	l->consumed = 0;
	l->records = 0;
	l->fd = open(l->journal, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (l->fd < 0)
		return err_set(err, -errno, "opening %s failed", l->journal);
	if (fstat(l->fd, &st) < 0)
		return err_set(err, -errno, "stat %s failed", l->journal);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

/* Under the lock: bring the in-memory leases up to date with the file. Returns its size. */
static int journal_sync(struct ipam_local *l, off_t *ret_size, struct err *err)
{
	_cleanup_free_ char *buf = NULL;
	struct stat st;
	size_t want, got = 0, start = 0;
	int r;

	if (l->fd < 0 || stat(l->journal, &st) < 0 || st.st_dev != l->dev || st.st_ino != l->ino) {
		r = journal_reopen(l, err);
		if (r < 0)
			return r;
	}
	if (fstat(l->fd, &st) < 0)
		return err_set(err, -errno, "stat %s failed", l->journal);
	if (st.st_size > (off_t)JOURNAL_MAX)
		return err_set(err, -EFBIG, "%s is larger than %u bytes", l->journal, JOURNAL_MAX);
	if (st.st_size < l->consumed) {
		/* Shrunk below what we applied: not something we do; start over. */
		r = journal_reopen(l, err);
		if (r < 0)
			return r;
	}
	want = (size_t)(st.st_size - l->consumed);
	if (want > 0) {
		buf = malloc(want + 1);
		if (!buf)
			return -ENOMEM;
		while (got < want) {
			ssize_t k = pread(l->fd, buf + got, want - got, l->consumed + (off_t)got);

			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0)
				return err_set(err, -errno, "reading %s failed", l->journal);
			if (k == 0)
				break;
			got += (size_t)k;
		}
		for (size_t i = 0; i < got; i++) {
			if (buf[i] != '\n')
				continue;
			buf[i] = '\0';
			if (i - start >= RECORD_MAX || record_apply(l, buf + start) < 0)
				return err_set(err, -EINVAL, "%s: corrupt record at byte %lld",
					       l->journal, (long long)(l->consumed + (off_t)start));
			l->records++;
			start = i + 1;
		}
		/* A tail without newline is a torn write; it stays unconsumed. */
		l->consumed += (off_t)start;
	}
	*ret_size = l->consumed + (off_t)(got - start);
	return 0;
}

/* Rewrite the journal with only the live leases (atomically; others notice the new inode). */
static int journal_compact(struct ipam_local *l, struct err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	off_t size = 0;
	int r;

	text = malloc(l->n * RECORD_MAX + 1);
	if (!text)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		char a[INET6_ADDRSTRLEN];

		len += (size_t)snprintf(text + len, RECORD_MAX + 1, "A %s %s\n", l->leases[i].name,
					ip6_format(&l->leases[i].addr, a, sizeof(a)));
	}
	r = write_file_atomic(l->journal, text, len, 0600);
	if (r < 0)
		return err_set(err, r, "compacting %s failed", l->journal);
	r = journal_reopen(l, err);
	if (r < 0)
		return r;
	return journal_sync(l, &size, err);
}

/* Under the lock, after journal_sync: append one record durably and apply it. */
static int journal_append(struct ipam_local *l, off_t size, const char *rec, struct err *err)
{
	_cleanup_free_ char *copy = NULL;
	size_t len = strlen(rec), done = 0;
	int r;

	if (size > l->consumed && ftruncate(l->fd, l->consumed) < 0)
		return err_set(err, -errno, "truncating torn record in %s failed", l->journal);
	while (done < len) {
		ssize_t k = pwrite(l->fd, rec + done, len - done, l->consumed + (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			/* Leave no partial record behind for the next reader. */
			(void)ftruncate(l->fd, l->consumed);
			return err_set(err, r, "writing %s failed", l->journal);
		}
		done += (size_t)k;
	}
	if (fdatasync(l->fd) < 0) {
		r = -errno;
		(void)ftruncate(l->fd, l->consumed);
		return err_set(err, r, "syncing %s failed", l->journal);
	}
	copy = strndup(rec, len - 1);
	if (!copy)
		return -ENOMEM;
	r = record_apply(l, copy);
	if (r < 0)
		return err_set(err, r, "applying record failed");
	l->consumed += (off_t)len;
	l->records++;
	/* The record is durable: a failed compaction only costs space; the next sync recovers. */
	if (l->records > COMPACT_MIN_RECORDS && l->records > 4 * l->n)
		(void)journal_compact(l, NULL);
	return 0;
}

int ipam_local_new(const char *state_dir, struct ipam_local **ret, struct err *err)
{
	_cleanup_free_ struct ipam_local *l = NULL;
	int r;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -EBADF;
	if (snprintf(l->dir, sizeof(l->dir), "%s/ipam", state_dir) >= (int)sizeof(l->dir) ||
	    snprintf(l->journal, sizeof(l->journal), "%s/leases", l->dir) >=
		    (int)sizeof(l->journal) ||
	    snprintf(l->lock, sizeof(l->lock), "%s/lock", l->dir) >= (int)sizeof(l->lock))
		return err_set(err, -ENAMETOOLONG, "state directory path too long");
	r = mkdir_p(l->dir, 0700);
	if (r < 0)
		return err_set(err, r, "creating %s failed", l->dir);
	*ret = TAKE_PTR(l);
	return 0;
}

struct ipam_local *ipam_local_free(struct ipam_local *l)
{
	if (!l)
		return NULL;
	safe_close(l->fd);
	free(l->leases);
	free(l->addrs);
	free(l);
	return NULL;
}

/* Every journal operation: the lock (released by the caller's cleanup), then the leases as the
 * journal holds them now. */
static int journal_begin(struct ipam_local *l, int *lock, off_t *ret_size, struct err *err)
{
	int r = lock_take(l, lock, err);

	return r < 0 ? r : journal_sync(l, ret_size, err);
}

int ipam_local_assign(struct ipam_local *l, const struct in6_addr *prefix, unsigned len,
		      const char *name, struct in6_addr *ret, struct err *err)
{
	_cleanup_(lock_release) int lock = -EBADF;
	char rec[RECORD_MAX], text[INET6_ADDRSTRLEN];
	const struct lease *e;
	struct in6_addr a;
	off_t size = 0;
	int r;

	r = journal_begin(l, &lock, &size, err);
	if (r < 0)
		return r;
	e = lease_find(l, name);
	if (e) {
		/* Kept even if the prefix changed since: the VM keeps its address (a /128). */
		*ret = e->addr;
		return 0;
	}
	if (l->n > 0) {
		struct in6_addr *p = realloc(l->addrs, l->n * sizeof(*p));

		if (!p)
			return -ENOMEM;
		l->addrs = p;
	}
	for (size_t i = 0; i < l->n; i++)
		l->addrs[i] = l->leases[i].addr;
	r = ipam_pick(prefix, len, l->addrs, l->n, &a, err);
	if (r < 0)
		return r;
	(void)snprintf(rec, sizeof(rec), "A %s %s\n", name, ip6_format(&a, text, sizeof(text)));
	r = journal_append(l, size, rec, err);
	if (r < 0)
		return r;
	*ret = a;
	return 0;
}

int ipam_local_release(struct ipam_local *l, const char *name, struct err *err)
{
	_cleanup_(lock_release) int lock = -EBADF;
	char rec[RECORD_MAX];
	off_t size = 0;
	int r;

	r = journal_begin(l, &lock, &size, err);
	if (r < 0)
		return r;
	if (!lease_find(l, name))
		return 0;
	(void)snprintf(rec, sizeof(rec), "R %s\n", name);
	return journal_append(l, size, rec, err);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ipam_local_list(struct ipam_local *l, char ***ret, struct err *err)
{
	_cleanup_(lock_release) int lock = -EBADF;
	off_t size = 0;
	size_t bytes = 0;
	char **arr, *p;
	int r;

	r = journal_begin(l, &lock, &size, err);
	if (r < 0)
		return r;
	if (l->n > INT_MAX)
		return -EOVERFLOW;
	for (size_t i = 0; i < l->n; i++)
		bytes += strlen(l->leases[i].name) + 1;
	arr = malloc((l->n + 1) * sizeof(char *) + bytes);
	if (!arr)
		return -ENOMEM;
	p = (char *)(arr + l->n + 1);
	for (size_t i = 0; i < l->n; i++) {
		size_t n = strlen(l->leases[i].name) + 1;

		arr[i] = memcpy(p, l->leases[i].name, n);
		p += n;
	}
	arr[l->n] = NULL;
	qsort(arr, l->n, sizeof(char *), cmp_name);
	*ret = arr;
	return (int)l->n;
}
