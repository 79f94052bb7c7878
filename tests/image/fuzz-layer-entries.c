/* SPDX-License-Identifier: MIT */
/*
 * Structured layers: the input is up to two layers of text lines "T PATH[\tTARGET]" (T: f file,
 * d dir, l symlink, h hard link, p fifo; "--" starts the next layer), written as real tars and
 * applied in order. Invariants: nothing appears or changes beside the rootfs, and no whiteout
 * marker survives as a file.
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build.h"
#include "fileio.h"
#include "fuzz-rootfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT 8192

/* True if a name starting with ".wh." exists anywhere below dfd. */
static bool has_marker(int dfd, unsigned depth)
{
	DIR *d;
	struct dirent *de;
	bool found = false;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || depth > 64)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while (!found && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strncmp(de->d_name, ".wh.", 4) == 0) {
			found = true;
		} else if (de->d_type == DT_DIR) {
			int sub = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				found = has_marker(sub, depth + 1);
				close(sub);
			}
		}
	}
	closedir(d);
	return found;
}

/* Write the lines of one layer as a tar into fd. */
static void write_layer(int fd, char *text)
{
	struct archive *a = archive_write_new();
	char *save = NULL;

	if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_open_fd(a, fd) != ARCHIVE_OK)
		abort();
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct archive_entry *e;
		char *target;

		if (strlen(line) < 3 || line[1] != ' ')
			continue;
		target = strchr(line + 2, '\t');
		if (target)
			*target++ = '\0';
		e = archive_entry_new();
		archive_entry_set_pathname(e, line + 2);
		archive_entry_set_mtime(e, 1700000000, 0);
		switch (line[0]) {
		case 'd':
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, 0755);
			break;
		case 'l':
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_perm(e, 0777);
			archive_entry_set_symlink(e, target ? target : "x");
			break;
		case 'h':
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_hardlink(e, target ? target : "x");
			break;
		case 'p':
			archive_entry_set_filetype(e, AE_IFIFO);
			archive_entry_set_perm(e, 0644);
			break;
		default:
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, target ? (la_int64_t)strlen(target) : 0);
			break;
		}
		if (archive_write_header(a, e) == ARCHIVE_OK && line[0] == 'f' && target)
			(void)archive_write_data(a, target, strlen(target));
		archive_entry_free(e);
	}
	(void)archive_write_close(a);
	archive_write_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct img_unpack_limits lim = {4u << 20, 10000};
	struct img_unpack u;
	struct err err = {0};
	char *text, *layers[2];
	int root_fd;

	if (size > FUZZ_MAX_INPUT)
		return 0;
	fuzz_rootfs_setup("entries");
	text = calloc(1, size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	layers[0] = text;
	layers[1] = strstr(text, "\n--\n");
	if (layers[1]) {
		*layers[1] = '\0';
		layers[1] += 4;
	}
	(void)rm_rf(fuzz_rootfs);
	if (mkdir(fuzz_rootfs, 0755) < 0 || img_unpack_init(&u, fuzz_rootfs, &lim, &err) < 0)
		abort();
	for (int i = 0; i < 2 && layers[i]; i++) {
		int fd = memfd_create("layer", MFD_CLOEXEC);

		if (fd < 0)
			abort();
		write_layer(fd, layers[i]);
		if (lseek(fd, 0, SEEK_SET) != 0)
			abort();
		if (img_unpack_layer(&u, fd, "sha256:fuzz", NULL, &err) < 0) {
			close(fd);
			break;
		}
		close(fd);
	}
	img_unpack_done(&u);
	free(text);
	if (!fuzz_rootfs_contained())
		__builtin_trap();
	root_fd = open(fuzz_rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd >= 0 && has_marker(root_fd, 0))
		__builtin_trap();
	if (root_fd >= 0)
		close(root_fd);
	return 0;
}
