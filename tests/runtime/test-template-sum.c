/* SPDX-License-Identifier: MIT */
/* The sum of a booted template's memory file (template_mem_sum, docs/template.md): its format
 * (SHA-256 over each non-zero page's offset and bytes, then the size), the same for the same
 * bytes whatever the holes (sparse, written zeros, an unaligned tail), and different for a
 * changed byte, a moved page or another size; not a regular file, a symlink or a missing one
 * is an error. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "internal.h"
#include "test.h"

#define PG 4096

static char D[] = "/tmp/test-template-sum-XXXXXX";

struct piece {
	off_t off;
	const char *bytes;
};

/* A file of size bytes: holes except the given (offset, bytes) pieces; with zeros, every byte
 * written (no hole at all). */
static void make(const char *name, off_t size, bool zeros, const struct piece *pieces, size_t n)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", D, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ASSERT_TRUE(fd >= 0);
	ASSERT_OK(ftruncate(fd, size));
	if (zeros) {
		static const char z[PG];

		for (off_t o = 0; o < size; o += PG)
			ASSERT_EQ(pwrite(fd, z, (size_t)MIN((off_t)PG, size - o), o),
				  (ssize_t)MIN((off_t)PG, size - o));
	}
	for (size_t i = 0; i < n; i++)
		ASSERT_EQ(pwrite(fd, pieces[i].bytes, strlen(pieces[i].bytes), pieces[i].off),
			  (ssize_t)strlen(pieces[i].bytes));
	close(fd);
}

static void sum(const char *name, char hex[65], off_t *size)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", D, name);
	ASSERT_OK(template_mem_sum(path, size, hex));
}

static void test_format(void)
{
	static char page[PG];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[65], want[65];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint64_t le;
	off_t size = 0;

	memset(page, 'x', sizeof(page));
	page[PG - 1] = '\0';
	make("one", 3 * PG, false, (const struct piece[]){{PG, page}}, 1);
	sum("one", hex, &size);
	ASSERT_EQ(size, 3 * PG);
	/* By hand: the one non-zero page (offset PG; its last byte a zero the file has too). */
	ASSERT_TRUE(ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1);
	le = htole64(PG);
	EVP_DigestUpdate(ctx, &le, sizeof(le));
	EVP_DigestUpdate(ctx, page, PG);
	le = htole64(3 * PG);
	EVP_DigestUpdate(ctx, &le, sizeof(le));
	ASSERT_TRUE(EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32);
	EVP_MD_CTX_free(ctx);
	for (unsigned i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
	ASSERT_STREQ(hex, want);
}

static void test_holes_do_not_matter(void)
{
	const struct piece p[] = {
		{3 * PG + 5, "abc"}, {40 * PG, "page forty"}, {(1 << 20) + 90, "tail"}};
	const struct piece zero_page[] = {{3 * PG + 5, "abc"},
					  {40 * PG, "page forty"},
					  {(1 << 20) + 90, "tail"},
					  {20 * PG, "\x01"}};
	const struct piece moved[] = {
		{4 * PG + 5, "abc"}, {40 * PG, "page forty"}, {(1 << 20) + 90, "tail"}};
	const struct piece changed[] = {
		{3 * PG + 5, "abd"}, {40 * PG, "page forty"}, {(1 << 20) + 90, "tail"}};
	off_t size = (1 << 20) + 100; /* the last page is partial */
	char a[65], b[65], c[65], x[65];
	off_t sa, sb;
	int fd;
	char path[256];

	make("sparse", size, false, p, ELEMENTSOF(p));
	make("dense", size, true, p, ELEMENTSOF(p));
	sum("sparse", a, &sa);
	sum("dense", b, &sb);
	ASSERT_STREQ(a, b);
	ASSERT_EQ(sa, size);
	ASSERT_EQ(sb, size);
	/* A page written with zeros (data, not a hole) is a zero page all the same. */
	make("zeropage", size, false, zero_page, ELEMENTSOF(zero_page));
	snprintf(path, sizeof(path), "%s/zeropage", D);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(pwrite(fd, "\0", 1, 20 * PG), 1);
	close(fd);
	sum("zeropage", c, &sa);
	ASSERT_STREQ(a, c);
	/* The same bytes at another page, one byte changed, another size: another sum. */
	make("moved", size, false, moved, ELEMENTSOF(moved));
	sum("moved", x, &sa);
	ASSERT_TRUE(strcmp(a, x) != 0);
	make("changed", size, false, changed, ELEMENTSOF(changed));
	sum("changed", x, &sa);
	ASSERT_TRUE(strcmp(a, x) != 0);
	make("bigger", size + PG, false, p, ELEMENTSOF(p));
	sum("bigger", x, &sa);
	ASSERT_TRUE(strcmp(a, x) != 0);
	ASSERT_EQ(sa, size + PG);
}

static void test_errors(void)
{
	char path[256], link[256], hex[65];
	off_t size;

	snprintf(path, sizeof(path), "%s/none", D);
	ASSERT_ERRNO(template_mem_sum(path, &size, hex), ENOENT);
	ASSERT_ERRNO(template_mem_sum(D, &size, hex), EINVAL);
	make("target", PG, false, NULL, 0);
	snprintf(path, sizeof(path), "%s/target", D);
	snprintf(link, sizeof(link), "%s/link", D);
	ASSERT_OK(symlink(path, link));
	ASSERT_ERRNO(template_mem_sum(link, &size, hex), ELOOP);
}

static void setup(void)
{
	static bool done;

	if (!done)
		ASSERT_TRUE(mkdtemp(D) != NULL);
	done = true;
}

static void t_format(void)
{
	setup();
	test_format();
	rm_rf(D);
}

static void t_holes(void)
{
	setup();
	test_holes_do_not_matter();
	rm_rf(D);
}

static void t_errors(void)
{
	setup();
	test_errors();
	rm_rf(D);
}

TEST_MAIN(TEST(t_format), TEST(t_holes), TEST(t_errors))
