/* file.c - opening input files for reading without being held up by what a path
 * names.  open(2) of a FIFO without a writer blocks forever, so a model, weights,
 * calibration or import path that names one would hang the compiler: every input is
 * opened with O_NONBLOCK (which returns at once), then the flag is cleared so that
 * reads block as usual (a pipe with a writer, /dev/stdin, still works; a FIFO with
 * none reads as empty). */
#include "support/support.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int
file_open_read(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

FILE *
file_fopen_read(const char *path)
{
	int fd = file_open_read(path);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

char *
file_slurp(const char *path, size_t max, size_t *len)
{
	FILE *fp = file_fopen_read(path);
	if (!fp)
		return NULL;
	char *buf = xmalloc(max + 1);
	size_t n = fread(buf, 1, max + 1, fp);
	bool bad = ferror(fp) || n > max;
	fclose(fp);
	if (bad) {
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}
