/* SPDX-License-Identifier: MIT */
/*
 * The inode table: ino -> { kind, VM reference, volume name, attribute, nlookup, generation }.
 * Inode numbers come from a 64-bit counter and are never reused, so the generation only has to
 * distinguish sessions; it is still kept per node as the forget contract describes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "macro.h"

#define NODE_BUCKETS 8192

struct node {
	fuse_ino_t ino;
	enum node_kind kind;
	struct vm *vm; /* reference */
	int attr;      /* index in fs_vm_attrs or fs_vol_attrs, -1 for a directory */
	char vol[VOLUME_NAME_MAX + 1]; /* volume of NODE_VOL_DIR/NODE_VOL_ATTR, else "" */
	uint64_t nlookup;
	uint64_t generation;
	struct node *next_ino; /* chain by ino */
	struct node *next_key; /* chain by (kind, vm, vol, attr) */
};

struct node_table {
	pthread_mutex_t lock; /* protects everything below; a leaf lock */
	fuse_ino_t next_ino;
	uint64_t generation;
	size_t count;
	struct node *by_ino[NODE_BUCKETS];
	struct node *by_key[NODE_BUCKETS];
};

static size_t hash_ino(fuse_ino_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 51) % NODE_BUCKETS;
}

static size_t hash_key(enum node_kind kind, const struct vm *vm, const char *vol, int attr)
{
	uint64_t k = (uint64_t)(uintptr_t)vm ^ ((uint64_t)(attr + 1) << 3) ^ ((uint64_t)kind << 40);

	/* FNV-1a over the volume name. */
	for (const char *p = vol; *p; p++)
		k = (k ^ (unsigned char)*p) * 0x100000001b3ull;
	return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 51) % NODE_BUCKETS;
}

static bool key_eq(const struct node *n, enum node_kind kind, const struct vm *vm, const char *vol,
		   int attr)
{
	return n->vm == vm && n->attr == attr && n->kind == kind && strcmp(n->vol, vol) == 0;
}

int node_table_new(struct node_table **ret)
{
	struct node_table *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	t->next_ino = FS_INO_FIRST;
	t->generation = 1;
	*ret = t;
	return 0;
}

struct node_table *node_table_free(struct node_table *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < NODE_BUCKETS; i++) {
		struct node *n = t->by_ino[i];
		while (n) {
			struct node *next = n->next_ino;
			vm_unref(n->vm);
			free(n);
			n = next;
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
	return NULL;
}

int node_table_get(struct node_table *t, enum node_kind kind, struct vm *vm, const char *vol,
		   int attr, fuse_ino_t *ret_ino, uint64_t *ret_gen)
{
	size_t hk;
	struct node *n;

	if (!vol)
		vol = "";
	if (strlen(vol) > VOLUME_NAME_MAX)
		return -EINVAL;
	hk = hash_key(kind, vm, vol, attr);
	pthread_mutex_lock(&t->lock);
	for (n = t->by_key[hk]; n; n = n->next_key)
		if (key_eq(n, kind, vm, vol, attr))
			break;
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&t->lock);
			return -ENOMEM;
		}
		n->ino = t->next_ino++;
		n->kind = kind;
		n->vm = vm_ref(vm);
		n->attr = attr;
		strcpy(n->vol, vol);
		n->generation = t->generation;
		n->next_key = t->by_key[hk];
		t->by_key[hk] = n;
		size_t hi = hash_ino(n->ino);
		n->next_ino = t->by_ino[hi];
		t->by_ino[hi] = n;
		t->count++;
	}
	n->nlookup++;
	*ret_ino = n->ino;
	*ret_gen = n->generation;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static void unlink_node(struct node_table *t, struct node *n)
{
	struct node **p;

	for (p = &t->by_ino[hash_ino(n->ino)]; *p; p = &(*p)->next_ino)
		if (*p == n) {
			*p = n->next_ino;
			break;
		}
	for (p = &t->by_key[hash_key(n->kind, n->vm, n->vol, n->attr)]; *p; p = &(*p)->next_key)
		if (*p == n) {
			*p = n->next_key;
			break;
		}
	t->count--;
}

void node_table_forget(struct node_table *t, fuse_ino_t ino, uint64_t nlookup)
{
	struct node *n, *dead = NULL;

	if (ino < FS_INO_FIRST)
		return;
	pthread_mutex_lock(&t->lock);
	for (n = t->by_ino[hash_ino(ino)]; n; n = n->next_ino)
		if (n->ino == ino)
			break;
	if (n) {
		n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
		if (n->nlookup == 0) {
			unlink_node(t, n);
			dead = n;
		}
	}
	pthread_mutex_unlock(&t->lock);
	/* vm_unref may take runtime locks: never under ours. */
	if (dead) {
		vm_unref(dead->vm);
		free(dead);
	}
}

int node_table_resolve(struct node_table *t, fuse_ino_t ino, struct node_info *ret)
{
	struct node *n;
	int r = -ENOENT;

	pthread_mutex_lock(&t->lock);
	for (n = t->by_ino[hash_ino(ino)]; n; n = n->next_ino)
		if (n->ino == ino) {
			ret->kind = n->kind;
			ret->vm = vm_ref(n->vm);
			ret->attr = n->attr < 0		       ? NULL
				    : n->kind == NODE_VOL_ATTR ? &fs_vol_attrs[n->attr]
							       : &fs_vm_attrs[n->attr];
			strcpy(ret->vol, n->vol);
			ret->generation = n->generation;
			r = 0;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return r;
}

size_t node_table_count(struct node_table *t)
{
	size_t c;

	pthread_mutex_lock(&t->lock);
	c = t->count;
	pthread_mutex_unlock(&t->lock);
	return c;
}
