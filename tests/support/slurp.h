/* slurp.h - how the Criterion tests read a whole file (fixtures, dumped logits,
 * generated outputs): the bytes in malloc'ed memory, 64-byte aligned so that float
 * arrays can be used in place, with a NUL after the last byte so that text is a
 * string.  A file that cannot be read fails the test.  Test-only: include it after
 * <criterion/criterion.h>. */
#ifndef ELIDE_TESTS_SLURP_H
#define ELIDE_TESTS_SLURP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file's bytes (caller frees); *n gets their count when n is non-NULL. */
static inline void *
ts_slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	cr_assert(f, "cannot open %s: %s", path, strerror(errno));
	cr_assert(fseek(f, 0, SEEK_END) == 0 && ftell(f) >= 0, "cannot seek in %s", path);
	size_t len = (size_t)ftell(f);
	rewind(f);
	char *p = aligned_alloc(64, (len + 64) & ~(size_t)63);
	cr_assert(p, "out of memory reading %s", path);
	cr_assert(fread(p, 1, len, f) == len, "cannot read %s", path);
	fclose(f);
	p[len] = '\0';
	if (n)
		*n = len;
	return p;
}

/* A file of raw float32 values (dumped logits): *n gets the number of floats. */
static inline float *
ts_slurp_floats(const char *path, size_t *n)
{
	float *x = ts_slurp(path, n);
	cr_assert(*n % sizeof *x == 0, "%s: %zu bytes is not a whole number of floats", path, *n);
	*n /= sizeof *x;
	return x;
}

#endif
