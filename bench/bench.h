/* bench.h - helpers shared by the benchmark programs (not tests): the median of
 * repeated timings, a loop timer that repeats a call until a run lasts long enough,
 * paired decode and prefill runs of two compiled models in one process, and a minimal
 * JSON writer.  Header-only so that the drivers run.sh compiles with cc
 * against a generated header need nothing but this file and the runtime. */
#ifndef ELIDE_BENCH_H
#define ELIDE_BENCH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

/* After an OpenBLAS call with several threads: OpenBLAS's worker threads spin for a
 * while (about 2^28 cycles) before they sleep, and would compete with the next
 * measured run for the cores; wait them out. */
static inline void
bench_settle(int threads)
{
	if (threads > 1) {
		struct timespec ts = { 0, 250 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* ---- read bandwidth: a float array summed in contiguous slices over a pool ---- */

typedef float bench_v16 __attribute__((vector_size(64), aligned(64)));

typedef struct BenchSum {
	const float *a;         /* 64-byte aligned */
	int64_t n;              /* floats */
	int nslices;            /* one per thread */
	double part[ELIDE_POOL_MAX_THREADS];
} BenchSum;

static void
bench_sum_task(void *ctx, int64_t b, int64_t e)
{
	BenchSum *j = ctx;
	for (int64_t s = b; s < e; s++) {
		int64_t lo = (j->n * s / j->nslices) & ~(int64_t)63;
		int64_t hi = s + 1 == j->nslices ? j->n : (j->n * (s + 1) / j->nslices) & ~(int64_t)63;
		const bench_v16 *p = (const bench_v16 *)(j->a + lo);
		int64_t nv = (hi - lo) / 16, i = 0;
		bench_v16 s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
		for (; i + 4 <= nv; i += 4) {
			s0 += p[i];
			s1 += p[i + 1];
			s2 += p[i + 2];
			s3 += p[i + 3];
		}
		for (; i < nv; i++)
			s0 += p[i];
		bench_v16 t = s0 + s1 + s2 + s3;
		double acc = 0;
		for (int k = 0; k < 16; k++)
			acc += t[k];
		for (int64_t r = lo + nv * 16; r < hi; r++)
			acc += j->a[r];
		j->part[s] = acc;
	}
}

/* A 2 MiB-aligned array of n floats on transparent huge pages where the kernel
 * allows it (as the runtime places a weight blob it reads), written so its pages
 * exist; NULL if no memory. */
static inline float *
bench_sum_array(int64_t n)
{
	size_t bytes = (size_t)elide_align_up((uint64_t)n * 4, (uint64_t)2 << 20);
	float *a = aligned_alloc((size_t)2 << 20, bytes);
#ifdef MADV_HUGEPAGE
	if (a)
		madvise(a, bytes, MADV_HUGEPAGE);
#endif
	if (a)
		for (int64_t i = 0; i < n; i++)
			a[i] = (float)(i & 1023) * 0.001f;
	return a;
}

/* GB/s of one read of a[0..n) by the pool's threads; *sum receives the total. */
static inline double
bench_read_gbps(elide_pool *pool, const float *a, int64_t n, double *sum)
{
	BenchSum job = { .a = a, .n = n, .nslices = elide_pool_threads(pool) };
	double t0 = (double)elide_now_ns();
	elide_pool_parallel_for(pool, job.nslices, bench_sum_task, &job);
	double t = ((double)elide_now_ns() - t0) * 1e-9;
	if (sum) {
		*sum = 0;
		for (int s = 0; s < job.nslices; s++)
			*sum += job.part[s];
	}
	return (double)n * 4 / t * 1e-9;
}

/* ---- paired runs: two compiled models in one process, timed in alternation ---- */

/* The program's name, for messages (its main sets it). */
static const char *bench_prog __attribute__((unused)) = "bench";

/* Exits with a message unless status is 0 (NAME_OK of every generated model). */
static inline void
bench_check(int status, const char *what)
{
	if (status != 0) {
		fprintf(stderr, "%s: %s failed with status %d\n", bench_prog, what, status);
		exit(1);
	}
}

/* A compiled model behind the calls a run needs (thin wrappers of NAME_reset, ...). */
typedef struct BenchModel {
	const char *name; /* for messages: "dense decode" */
	void *ctx;        /* NAME_ctx */
	int vocab;        /* logits per step */
	int (*reset)(void *ctx);
	int (*step)(void *ctx, int32_t token, int32_t pos, float *out);
	int (*prefill)(void *ctx, const int32_t *toks, int32_t n, int32_t pos, float *out); /* NULL: none */
} BenchModel;

/* One run of n greedy decode steps from position 0 (first token toks[0]): seconds. */
static inline double
bench_decode_run(const BenchModel *m, const int32_t *toks, int n, float *logits)
{
	bench_check(m->reset(m->ctx), m->name);
	double t0 = bench_seconds();
	int32_t tok = toks[0];
	for (int i = 0; i < n; i++) {
		bench_check(m->step(m->ctx, tok, i, logits), m->name);
		tok = elide_sample_argmax(logits, m->vocab);
	}
	return bench_seconds() - t0;
}

/* One prefill of toks[0..n) from position 0: seconds. */
static inline double
bench_prefill_run(const BenchModel *m, const int32_t *toks, int n, float *logits)
{
	bench_check(m->reset(m->ctx), m->name);
	double t0 = bench_seconds();
	bench_check(m->prefill(m->ctx, toks, n, 0, logits), m->name);
	return bench_seconds() - t0;
}

/* toks[0..n): seeded random tokens below vocab, the same in every program. */
static inline void
bench_tokens(int32_t *toks, int n, int vocab)
{
	uint64_t rng = 17;
	for (int i = 0; i < n; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % (uint64_t)vocab);
}

typedef double (*BenchRun)(const BenchModel *m, const int32_t *toks, int n, float *logits);

/* BENCH_RUNS pairs of runs, a then b back to back so that both runs of a pair see
 * the same load: ta[r], tb[r] their seconds.  Returns the median over pairs of the
 * speed-up ta / tb. */
static inline double
bench_paired(BenchRun run, const BenchModel *a, const BenchModel *b, const int32_t *toks, int n,
             float *logits, double *ta, double *tb)
{
	double sp[BENCH_RUNS];
	for (int r = 0; r < BENCH_RUNS; r++) {
		ta[r] = run(a, toks, n, logits);
		tb[r] = run(b, toks, n, logits);
		sp[r] = ta[r] / tb[r];
	}
	return bench_median(sp, BENCH_RUNS);
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
	fprintf(j->f, "%.10g", v);
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
