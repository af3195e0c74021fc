/* bench.h - helpers shared by the benchmark programs (not tests): the median of
 * repeated timings, a loop timer that repeats a call until a run lasts long enough,
 * and a minimal JSON writer.  Header-only so that the drivers run.sh compiles with cc
 * against a generated header need nothing but this file and the runtime. */
#ifndef ELIDE_BENCH_H
#define ELIDE_BENCH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/elide_rt.h"

#define BENCH_RUNS 7 /* timed runs per figure; the median is reported (>= 5) */

static int
bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double
bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static inline double
bench_seconds(void)
{
	return (double)elide_now_ns() * 1e-9;
}

/* Repetitions of a call lasting `once` seconds that make a run of about `target`. */
static inline long
bench_reps(double once, double target)
{
	if (once <= 0)
		return 1000000;
	double r = target / once;
	return r < 1 ? 1 : r > 1e7 ? 10000000 : (long)r;
}

/* ---- JSON: objects written in order, commas handled by a depth-indexed flag ---- */
typedef struct BenchJson {
	FILE *f;
	int depth;
	int first[16];
} BenchJson;

static inline void
bj_sep(BenchJson *j)
{
	if (!j->first[j->depth])
		fputc(',', j->f);
	j->first[j->depth] = 0;
}

static inline void
bj_key(BenchJson *j, const char *k)
{
	bj_sep(j);
	if (k)
		fprintf(j->f, "\"%s\":", k);
}

static inline void
bj_open(BenchJson *j, const char *k, char c)
{
	bj_key(j, k);
	fputc(c, j->f);
	j->first[++j->depth] = 1;
}

static inline void
bj_close(BenchJson *j, char c)
{
	fputc(c, j->f);
	j->depth--;
}

static inline void
bj_num(BenchJson *j, const char *k, double v)
{
	bj_key(j, k);
	fprintf(j->f, "%.6g", v);
}

static inline void
bj_str(BenchJson *j, const char *k, const char *v)
{
	bj_key(j, k);
	fprintf(j->f, "\"%s\"", v);
}

/* Opens path for the program's JSON object; exits on failure. */
static inline BenchJson
bj_begin(const char *path)
{
	BenchJson j = { 0 };
	j.f = fopen(path, "w");
	if (!j.f) {
		perror(path);
		exit(1);
	}
	j.depth = 0;
	j.first[0] = 1;
	fputc('{', j.f);
	j.depth = 1;
	j.first[1] = 1;
	return j;
}

static inline void
bj_end(BenchJson *j)
{
	fputs("}\n", j->f);
	fclose(j->f);
}

#endif
