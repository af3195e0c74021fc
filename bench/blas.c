/* blas.c - OpenBLAS SGEMV and SGEMM GFLOPS at the linear-layer shapes of the
 * benchmark models: y = W x (decode) and Y = X W^T with T rows (prefill), W[n, k]
 * row-major as elide stores nn.Linear weights.  1 and 2 OpenBLAS threads; medians of
 * BENCH_RUNS runs, each repeating the call for about 50 ms.
 * Usage: bench_blas OUT.json T NAME:N:K ...  (e.g. S.wq:288:288) */
#include <cblas.h>

#include "bench/bench.h"

#define RUN_SECONDS 0.05

typedef struct Shape {
	const char *name;
	int n, k;
} Shape;

static float *
rand_floats(size_t n, uint64_t seed)
{
	float *p = aligned_alloc(64, elide_align_up(n * sizeof *p, 64));
	if (!p) {
		fprintf(stderr, "bench_blas: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = elide_rng_float(&seed) - 0.5f;
	return p;
}

static void
call(int gemm, int t, const Shape *s, const float *w, const float *x, float *y)
{
	if (gemm)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, s->n, s->k, 1.0f, x, s->k, w, s->k, 0.0f,
		            y, s->n);
	else
		cblas_sgemv(CblasRowMajor, CblasNoTrans, s->n, s->k, 1.0f, w, s->k, x, 1, 0.0f, y, 1);
}

/* Median GFLOPS of op gemm (0: sgemv, 1: sgemm with t rows). */
static double
measure(int gemm, int t, const Shape *s, const float *w, const float *x, float *y)
{
	double flops = 2.0 * s->n * s->k * (gemm ? t : 1);
	call(gemm, t, s, w, x, y);
	double t0 = bench_seconds();
	call(gemm, t, s, w, x, y);
	long reps = bench_reps(bench_seconds() - t0, RUN_SECONDS);
	double g[BENCH_RUNS];
	for (int r = 0; r < BENCH_RUNS; r++) {
		t0 = bench_seconds();
		for (long i = 0; i < reps; i++)
			call(gemm, t, s, w, x, y);
		g[r] = flops * (double)reps / (bench_seconds() - t0) * 1e-9;
	}
	return bench_median(g, BENCH_RUNS);
}

int
main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: bench_blas OUT.json T NAME:N:K ...\n");
		return 2;
	}
	int t = atoi(argv[2]);
	int nshapes = argc - 3;
	Shape *sh = calloc((size_t)nshapes, sizeof *sh);
	for (int i = 0; i < nshapes; i++) {
		char *spec = argv[3 + i], *c1 = strchr(spec, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2) {
			fprintf(stderr, "bench_blas: bad shape '%s' (NAME:N:K)\n", spec);
			return 2;
		}
		*c1 = 0;
		sh[i] = (Shape){ spec, atoi(c1 + 1), atoi(c2 + 1) };
	}
	BenchJson j = bj_begin(argv[1]);
	bj_str(&j, "library", "openblas");
	bj_str(&j, "config", openblas_get_config());
	bj_num(&j, "t", t);
	bj_num(&j, "runs", BENCH_RUNS);
	bj_open(&j, "shapes", '[');
	printf("%-12s %6s %6s  %12s %12s  %12s %12s\n", "openblas", "n", "k", "sgemv 1t", "sgemv 2t",
	       "sgemm 1t", "sgemm 2t");
	for (int i = 0; i < nshapes; i++) {
		const Shape *s = &sh[i];
		float *w = rand_floats((size_t)s->n * s->k, 1 + (uint64_t)i);
		float *x = rand_floats((size_t)t * s->k, 100 + (uint64_t)i);
		float *y = rand_floats((size_t)t * s->n, 200);
		double gv[2], gm[2];
		for (int th = 1; th <= 2; th++) {
			openblas_set_num_threads(th);
			gv[th - 1] = measure(0, t, s, w, x, y);
			gm[th - 1] = measure(1, t, s, w, x, y);
		}
		bj_open(&j, NULL, '{');
		bj_str(&j, "name", s->name);
		bj_num(&j, "n", s->n);
		bj_num(&j, "k", s->k);
		bj_open(&j, "sgemv_gflops", '{');
		bj_num(&j, "1", gv[0]);
		bj_num(&j, "2", gv[1]);
		bj_close(&j, '}');
		bj_open(&j, "sgemm_gflops", '{');
		bj_num(&j, "1", gm[0]);
		bj_num(&j, "2", gm[1]);
		bj_close(&j, '}');
		bj_close(&j, '}');
		printf("%-12s %6d %6d  %8.1f GF/s %8.1f GF/s  %8.1f GF/s %8.1f GF/s\n", s->name, s->n, s->k, gv[0],
		       gv[1], gm[0], gm[1]);
		fflush(stdout);
		free(w);
		free(x);
		free(y);
	}
	bj_close(&j, ']');
	bj_end(&j);
	free(sh);
	return 0;
}
