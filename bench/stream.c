/* stream.c - STREAM-like read bandwidth of the machine: the time to sum a float array
 * much larger than the last-level cache, split over 1 and 2 threads of the runtime's
 * pool (the same pool the generated code uses).  Medians of BENCH_RUNS runs.
 * Usage: bench_stream OUT.json [MiB] [threads...]   (default 512 MiB, threads 1 2) */
#include "bench/bench.h"

typedef float v16 __attribute__((vector_size(64), aligned(64)));

typedef struct Job {
	const float *a;
	int64_t n;              /* floats */
	int nslices;
	double part[ELIDE_POOL_MAX_THREADS];
} Job;

static void
sum_task(void *ctx, int64_t b, int64_t e)
{
	Job *j = ctx;
	for (int64_t s = b; s < e; s++) {
		int64_t lo = j->n * s / j->nslices, hi = j->n * (s + 1) / j->nslices;
		lo &= ~(int64_t)63;
		hi = s + 1 == j->nslices ? j->n : hi & ~(int64_t)63;
		const v16 *p = (const v16 *)(j->a + lo);
		int64_t nv = (hi - lo) / 16;
		v16 s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
		int64_t i = 0;
		for (; i + 4 <= nv; i += 4) {
			s0 += p[i];
			s1 += p[i + 1];
			s2 += p[i + 2];
			s3 += p[i + 3];
		}
		for (; i < nv; i++)
			s0 += p[i];
		v16 t = s0 + s1 + s2 + s3;
		double acc = 0;
		for (int k = 0; k < 16; k++)
			acc += t[k];
		for (int64_t r = lo + nv * 16; r < hi; r++)
			acc += j->a[r];
		j->part[s] = acc;
	}
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_stream OUT.json [MiB] [threads...]\n");
		return 2;
	}
	size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
	int64_t n = (int64_t)(mib << 20) / 4;
	float *a = aligned_alloc(64, (size_t)n * 4);
	if (!a) {
		fprintf(stderr, "bench_stream: out of memory\n");
		return 1;
	}
	for (int64_t i = 0; i < n; i++)
		a[i] = (float)(i & 1023) * 0.001f;
	int thr[8] = { 1, 2 }, nthr = 2;
	if (argc > 3) {
		nthr = 0;
		for (int i = 3; i < argc && nthr < 8; i++)
			thr[nthr++] = atoi(argv[i]);
	}
	BenchJson j = bj_begin(argv[1]);
	bj_num(&j, "mib", (double)mib);
	bj_num(&j, "runs", BENCH_RUNS);
	bj_open(&j, "threads", '{');
	for (int ti = 0; ti < nthr; ti++) {
		elide_pool *pool = elide_pool_create(thr[ti]);
		Job job = { .a = a, .n = n, .nslices = thr[ti] };
		double gbps[BENCH_RUNS], best = 0, expect = 0;
		for (int64_t i = 0; i < 1024; i++)
			expect += (double)((float)i * 0.001f);
		expect *= (double)(n / 1024);
		elide_pool_parallel_for(pool, job.nslices, sum_task, &job); /* warm up */
		for (int r = 0; r < BENCH_RUNS; r++) {
			double t0 = bench_seconds();
			elide_pool_parallel_for(pool, job.nslices, sum_task, &job);
			double t = bench_seconds() - t0;
			gbps[r] = (double)n * 4 / t * 1e-9;
			if (gbps[r] > best)
				best = gbps[r];
		}
		double sum = 0;
		for (int s = 0; s < job.nslices; s++)
			sum += job.part[s];
		if (sum < expect * 0.999 || sum > expect * 1.001) {
			fprintf(stderr, "bench_stream: wrong sum %g (expected %g)\n", sum, expect);
			return 1;
		}
		double med = bench_median(gbps, BENCH_RUNS);
		char key[16];
		snprintf(key, sizeof key, "%d", thr[ti]);
		bj_open(&j, key, '{');
		bj_num(&j, "gbps_median", med);
		bj_num(&j, "gbps_max", best);
		bj_close(&j, '}');
		printf("stream read  %d thread%s  %8.2f GB/s median  (max %.2f, %zu MiB, %d runs)\n", thr[ti],
		       thr[ti] > 1 ? "s" : " ", med, best, mib, BENCH_RUNS);
		elide_pool_destroy(pool);
	}
	bj_close(&j, '}');
	bj_end(&j);
	free(a);
	return 0;
}
