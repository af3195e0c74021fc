/* stream.c - STREAM-like read bandwidth of the machine: the time to sum a float array
 * much larger than the last-level cache, split over 1 and 2 threads of the runtime's
 * pool (the same pool the generated code uses).  Medians of BENCH_RUNS runs.
 * The array is on transparent huge pages where available (see bench_sum_array).
 * Usage: bench_stream OUT.json [MiB] [threads...]   (default 512 MiB, threads 1 2) */
#include "bench/bench.h"

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_stream OUT.json [MiB] [threads...]\n");
		return 2;
	}
	size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 512;
	int64_t n = (int64_t)(mib << 20) / 4;
	float *a = bench_sum_array(n);
	if (!a) {
		fprintf(stderr, "bench_stream: out of memory\n");
		return 1;
	}
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
		double gbps[BENCH_RUNS], best = 0, expect = 0, sum = 0;
		for (int64_t i = 0; i < 1024; i++)
			expect += (double)((float)i * 0.001f);
		expect *= (double)(n / 1024);
		bench_read_gbps(pool, a, n, NULL); /* warm up */
		for (int r = 0; r < BENCH_RUNS; r++) {
			gbps[r] = bench_read_gbps(pool, a, n, &sum);
			if (gbps[r] > best)
				best = gbps[r];
		}
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
