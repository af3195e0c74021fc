/* kernel.c - GFLOPS of elide's generated linear kernels: built by run.sh with cc
 * against the header of a one-linear model (`kern`: y = linear(embed(emb, tok), w),
 * w[N, K]), it times kern_step (GEMV, one row) and kern_forward with T rows (GEMM),
 * at 1 and 2 threads, medians of BENCH_RUNS runs of about 50 ms.  Built with
 * -DBENCH_OPENBLAS it alternates each run with OpenBLAS doing the same product
 * (SGEMV / SGEMM, same thread count), so that both see the same machine load; the
 * ratio is the median of the per-run ratios (after each OpenBLAS run with threads,
 * a pause lets its spinning threads go to sleep before elide runs).
 * With BENCH_CPU_TIME=1 in the environment the figures use the process's CPU time
 * (all threads) instead of wall time: on a machine shared with other jobs that
 * compares the work of two kernels at 1 thread, not their parallel speed.
 * Usage: bench_kernel NAME kern.weights T OUT.json */
#include "bench/bench.h"
#include "kern.h"

#include <stdbool.h>
#ifdef BENCH_OPENBLAS
#include <cblas.h>
#endif

#define RUN_SECONDS 0.05

static kern_ctx *ctx;
static bool cpu_time;

static double
now(void)
{
	if (!cpu_time)
		return bench_seconds();
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static int nthreads;
static int32_t toks[KERN_CTX];
static float *out, *w, *x;

/* impl 0: elide, 1: OpenBLAS */
static void
call(int impl, int gemm, int t)
{
#ifdef BENCH_OPENBLAS
	if (impl) {
		if (gemm)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, KERN_N, KERN_K, 1.0f, x, KERN_K, w,
			            KERN_K, 0.0f, out, KERN_N);
		else
			cblas_sgemv(CblasRowMajor, CblasNoTrans, KERN_N, KERN_K, 1.0f, w, KERN_K, x, 1, 0.0f, out, 1);
		return;
	}
#endif
	int s = gemm ? kern_forward(ctx, toks, t, out) : kern_step(ctx, toks[0], 0, out);
	if (s != KERN_OK) {
		fprintf(stderr, "bench_kernel: %s failed with status %d\n", gemm ? "forward" : "step", s);
		exit(1);
	}
}

static long
calibrate(int impl, int gemm, int t)
{
	call(impl, gemm, t);
	double t0 = now();
	call(impl, gemm, t);
	return bench_reps(now() - t0, RUN_SECONDS);
}

static double
run(int impl, int gemm, int t, long reps)
{
	double flops = 2.0 * KERN_N * KERN_K * (gemm ? t : 1);
	double t0 = now();
	for (long i = 0; i < reps; i++)
		call(impl, gemm, t);
	return flops * (double)reps / (now() - t0) * 1e-9;
}

/* Medians: res[0] elide GFLOPS, res[1] OpenBLAS GFLOPS, res[2] elide / OpenBLAS. */
static void
measure(int gemm, int t, int nimpl, double res[3])
{
	long reps[2] = { calibrate(0, gemm, t), nimpl > 1 ? calibrate(1, gemm, t) : 0 };
	double g[2][BENCH_RUNS], ratio[BENCH_RUNS];
	for (int r = 0; r < BENCH_RUNS; r++) {
		for (int i = 0; i < nimpl; i++) {
			g[i][r] = run(i, gemm, t, reps[i]);
			if (i == 1)
				bench_settle(nthreads);
		}
		ratio[r] = nimpl > 1 ? g[0][r] / g[1][r] : 0;
	}
	res[0] = bench_median(g[0], BENCH_RUNS);
	res[1] = nimpl > 1 ? bench_median(g[1], BENCH_RUNS) : 0;
	res[2] = bench_median(ratio, BENCH_RUNS);
}

int
main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_kernel NAME kern.weights T OUT.json\n");
		return 2;
	}
	const char *ct = getenv("BENCH_CPU_TIME");
	cpu_time = ct && *ct == '1';
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
	w = aligned_alloc(64, elide_align_up((size_t)KERN_N * KERN_K * sizeof *w, 64));
	x = aligned_alloc(64, elide_align_up((size_t)KERN_CTX * KERN_K * sizeof *x, 64));
	uint64_t rng = 5;
	for (int i = 0; i < KERN_CTX; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % KERN_VOCAB);
	for (size_t i = 0; i < (size_t)KERN_N * KERN_K; i++)
		w[i] = elide_rng_float(&rng) - 0.5f;
	for (size_t i = 0; i < (size_t)KERN_CTX * KERN_K; i++)
		x[i] = elide_rng_float(&rng) - 0.5f;
	int nimpl = 1;
#ifdef BENCH_OPENBLAS
	nimpl = 2;
#endif
	double gv[2][3], gm[2][3];
	for (int th = 1; th <= 2; th++) {
		nthreads = th;
		if (kern_set_threads(ctx, th) != KERN_OK) {
			fprintf(stderr, "bench_kernel: set_threads(%d) failed\n", th);
			return 1;
		}
#ifdef BENCH_OPENBLAS
		openblas_set_num_threads(th);
#endif
		measure(0, t, nimpl, gv[th - 1]);
		measure(1, t, nimpl, gm[th - 1]);
	}
	BenchJson j = bj_begin(argv[4]);
	bj_str(&j, "name", argv[1]);
	bj_num(&j, "n", KERN_N);
	bj_num(&j, "k", KERN_K);
	bj_num(&j, "t", t);
	const char *keys[2][3] = { { "gemv_gflops", "paired_openblas_gemv_gflops", "paired_gemv_vs_openblas" },
		                   { "gemm_gflops", "paired_openblas_gemm_gflops", "paired_gemm_vs_openblas" } };
	for (int op = 0; op < 2; op++)
		for (int f = 0; f < nimpl + (nimpl > 1); f++) {
			bj_open(&j, keys[op][f], '{');
			bj_num(&j, "1", op ? gm[0][f] : gv[0][f]);
			bj_num(&j, "2", op ? gm[1][f] : gv[1][f]);
			bj_close(&j, '}');
		}
	bj_end(&j);
	printf("%-10s %6d %6d  %7.1f %7.1f  %7.1f %7.1f", argv[1], KERN_N, KERN_K, gv[0][0], gv[1][0], gm[0][0],
	       gm[1][0]);
	if (nimpl > 1)
		printf("   | %4.2fx %4.2fx  %4.2fx %4.2fx", gv[0][2], gv[1][2], gm[0][2], gm[1][2]);
	printf("\n");
	kern_destroy(ctx);
	free(out);
	free(w);
	free(x);
	return 0;
}
