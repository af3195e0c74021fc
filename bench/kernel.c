/* kernel.c - GFLOPS of elide's generated linear kernels: built by run.sh with cc
 * against the header of a one-linear model (`kern`: y = linear(embed(emb, tok), w),
 * w[N, K]), it times kern_step (GEMV, one row) and kern_forward with T rows (GEMM),
 * at 1 and 2 threads, medians of BENCH_RUNS runs of about 50 ms.
 * Usage: bench_kernel NAME kern.weights T OUT.json */
#include "bench/bench.h"
#include "kern.h"

#define RUN_SECONDS 0.05

static kern_ctx *ctx;
static int32_t toks[KERN_CTX];
static float *out;

static void
call(int gemm, int t)
{
	int s = gemm ? kern_forward(ctx, toks, t, out) : kern_step(ctx, toks[0], 0, out);
	if (s != KERN_OK) {
		fprintf(stderr, "bench_kernel: %s failed with status %d\n", gemm ? "forward" : "step", s);
		exit(1);
	}
}

static double
measure(int gemm, int t)
{
	double flops = 2.0 * KERN_N * KERN_K * (gemm ? t : 1);
	call(gemm, t);
	double t0 = bench_seconds();
	call(gemm, t);
	long reps = bench_reps(bench_seconds() - t0, RUN_SECONDS);
	double g[BENCH_RUNS];
	for (int r = 0; r < BENCH_RUNS; r++) {
		t0 = bench_seconds();
		for (long i = 0; i < reps; i++)
			call(gemm, t);
		g[r] = flops * (double)reps / (bench_seconds() - t0) * 1e-9;
	}
	return bench_median(g, BENCH_RUNS);
}

int
main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_kernel NAME kern.weights T OUT.json\n");
		return 2;
	}
	int t = atoi(argv[3]);
	if (t < 1 || t > KERN_CTX) {
		fprintf(stderr, "bench_kernel: T must be in 1..%d\n", KERN_CTX);
		return 2;
	}
	ctx = kern_create();
	int s = ctx ? kern_load_weights(ctx, argv[2]) : -1;
	if (s != KERN_OK) {
		fprintf(stderr, "bench_kernel: cannot load %s (status %d)\n", argv[2], s);
		return 1;
	}
	out = aligned_alloc(64, elide_align_up((size_t)KERN_CTX * KERN_N * sizeof *out, 64));
	uint64_t rng = 5;
	for (int i = 0; i < KERN_CTX; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % KERN_VOCAB);
	double gv[2], gm[2];
	for (int th = 1; th <= 2; th++) {
		if (kern_set_threads(ctx, th) != KERN_OK) {
			fprintf(stderr, "bench_kernel: set_threads(%d) failed\n", th);
			return 1;
		}
		gv[th - 1] = measure(0, t);
		gm[th - 1] = measure(1, t);
	}
	BenchJson j = bj_begin(argv[4]);
	bj_str(&j, "name", argv[1]);
	bj_num(&j, "n", KERN_N);
	bj_num(&j, "k", KERN_K);
	bj_num(&j, "t", t);
	bj_open(&j, "gemv_gflops", '{');
	bj_num(&j, "1", gv[0]);
	bj_num(&j, "2", gv[1]);
	bj_close(&j, '}');
	bj_open(&j, "gemm_gflops", '{');
	bj_num(&j, "1", gm[0]);
	bj_num(&j, "2", gm[1]);
	bj_close(&j, '}');
	bj_end(&j);
	printf("%-12s %6d %6d  %8.1f GF/s %8.1f GF/s  %8.1f GF/s %8.1f GF/s\n", argv[1], KERN_N, KERN_K, gv[0],
	       gv[1], gm[0], gm[1]);
	kern_destroy(ctx);
	free(out);
	return 0;
}
