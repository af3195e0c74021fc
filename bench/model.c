/* model.c - decode and prefill speed of a compiled Llama: built by run.sh with cc
 * against the generated llama.h (examples/llama/llama.elide at the benchmark's
 * shape, seeded random weights), linked with llama.o and the runtime.  For 1 and 2
 * threads: decode tokens/s over NDECODE steps from position 0, and prefill tokens/s
 * of one NPREFILL-token prefill, medians of BENCH_RUNS runs; with the weight bytes
 * touched per decoded token (from the manifest, or computed from the shapes) it
 * reports the decode read rate in GB/s.  The machine may be shared, so each decode
 * run is paired with a read-bandwidth run just before it (same thread count) and each
 * prefill run with OpenBLAS doing the same matrix products just after it (when built
 * with -DBENCH_OPENBLAS); the ratios are medians of the per-run ratios.
 * Usage: bench_model NAME llama.weights NDECODE NPREFILL WEIGHT_BYTES_PER_TOKEN OUT.json */
#include "bench/bench.h"
#include "llama.h"
#ifdef BENCH_OPENBLAS
#include <cblas.h>
#endif

#define D LLAMA_DIM
#define KVD (LLAMA_KV_HEADS * (LLAMA_DIM / LLAMA_HEADS))
#define F LLAMA_FFN

#ifdef BENCH_OPENBLAS
/* The matrix products of a t-token prefill, done by OpenBLAS on weights of the same
 * shapes (one set per layer, so that they stream from memory as the model's do). */
typedef struct Blas {
	float *w[LLAMA_LAYERS][7]; /* wq wk wv wo w1 w3 w2 */
	float *lm, *x, *q, *h1, *h2, *y;
} Blas;

static float *
rnd(size_t n, uint64_t seed)
{
	float *p = aligned_alloc(64, elide_align_up(n * sizeof *p, 64));
	if (!p) {
		fprintf(stderr, "bench_model: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = (elide_rng_float(&seed) - 0.5f) * 0.1f;
	return p;
}

static void
blas_init(Blas *b)
{
	static const int rows[7] = { D, KVD, KVD, D, F, F, D }, cols[7] = { D, D, D, D, D, D, F };
	for (int l = 0; l < LLAMA_LAYERS; l++)
		for (int i = 0; i < 7; i++)
			b->w[l][i] = rnd((size_t)rows[i] * cols[i], (uint64_t)(l * 7 + i + 1));
	b->lm = rnd((size_t)LLAMA_VOCAB * D, 99);
	b->x = rnd((size_t)LLAMA_CTX * D, 100);
	b->q = rnd((size_t)LLAMA_CTX * D, 101);
	b->h1 = rnd((size_t)LLAMA_CTX * F, 102);
	b->h2 = rnd((size_t)LLAMA_CTX * F, 103);
	b->y = rnd(LLAMA_VOCAB, 104);
}

/* Y[t, n] = X[t, k] W[n, k]^T */
static void
mm(int t, int n, int k, const float *x, const float *w, float *y)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
}

/* Seconds OpenBLAS takes for the products of a t-token prefill. */
static double
blas_prefill(Blas *b, int t)
{
	double t0 = bench_seconds();
	for (int l = 0; l < LLAMA_LAYERS; l++) {
		float **w = b->w[l];
		mm(t, D, D, b->x, w[0], b->q);
		mm(t, KVD, D, b->x, w[1], b->h1);
		mm(t, KVD, D, b->x, w[2], b->h2);
		mm(t, D, D, b->q, w[3], b->x);
		mm(t, F, D, b->x, w[4], b->h1);
		mm(t, F, D, b->x, w[5], b->h2);
		mm(t, D, F, b->h1, w[6], b->x);
	}
	cblas_sgemv(CblasRowMajor, CblasNoTrans, LLAMA_VOCAB, D, 1.0f, b->lm, D, b->x, 1, 0.0f, b->y, 1);
	return bench_seconds() - t0;
}
#endif

static void
check(int s, const char *what)
{
	if (s != LLAMA_OK) {
		fprintf(stderr, "bench_model: %s failed with status %d\n", what, s);
		exit(1);
	}
}

/* Weight bytes a decode step reads: every linear, the norms, one embedding row. */
static double
bytes_from_shapes(void)
{
	double d = D, kvd = KVD, f = F;
	double layer = d * d * 2 + kvd * d * 2 + f * d * 3 + 2 * d;
	return 4.0 * (LLAMA_LAYERS * layer + d + (double)LLAMA_VOCAB * d + d);
}

/* FLOPs of the matrix products of a t-token prefill (the last row only through the
 * head), and of its attention (QK^T and AV over the causal prefix). */
static void
prefill_flops(int t, double *linear, double *attn)
{
	double d = D, kvd = KVD, f = F;
	double per_tok = 2.0 * (d * d * 2 + kvd * d * 2 + f * d * 3) * LLAMA_LAYERS;
	*linear = per_tok * t + 2.0 * LLAMA_VOCAB * d;
	double a = 0;
	for (int i = 0; i < t; i++)
		a += 4.0 * (i + 1) * d;
	*attn = a * LLAMA_LAYERS;
}

int
main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: bench_model NAME llama.weights NDECODE NPREFILL BYTES_PER_TOKEN OUT.json\n");
		return 2;
	}
	int ndec = atoi(argv[3]), npre = atoi(argv[4]);
	double bpt = atof(argv[5]);
	if (bpt <= 0)
		bpt = bytes_from_shapes();
	if (ndec < 1 || ndec > LLAMA_CTX || npre < 1 || npre > LLAMA_CTX) {
		fprintf(stderr, "bench_model: NDECODE and NPREFILL must be in 1..%d\n", LLAMA_CTX);
		return 2;
	}
	llama_ctx *ctx = llama_create();
	if (!ctx) {
		fprintf(stderr, "bench_model: out of memory\n");
		return 1;
	}
	double t0 = bench_seconds();
	check(llama_load_weights(ctx, argv[2]), "load_weights");
	double load_s = bench_seconds() - t0;
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits);
	int32_t *toks = malloc((size_t)LLAMA_CTX * sizeof *toks);
	uint64_t rng = 17;
	for (int i = 0; i < LLAMA_CTX; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % LLAMA_VOCAB);
	double lin, attn;
	prefill_flops(npre, &lin, &attn);
	int64_t nbw = (int64_t)64 << 20; /* 256 MiB read before each decode run */
	float *bwa = bench_sum_array(nbw);
	if (!bwa) {
		fprintf(stderr, "bench_model: out of memory\n");
		return 1;
	}
#ifdef BENCH_OPENBLAS
	static Blas blas;
	blas_init(&blas);
#endif

	BenchJson j = bj_begin(argv[6]);
	bj_str(&j, "name", argv[1]);
	bj_open(&j, "shape", '{');
	bj_num(&j, "dim", LLAMA_DIM);
	bj_num(&j, "layers", LLAMA_LAYERS);
	bj_num(&j, "heads", LLAMA_HEADS);
	bj_num(&j, "kv_heads", LLAMA_KV_HEADS);
	bj_num(&j, "ffn", LLAMA_FFN);
	bj_num(&j, "vocab", LLAMA_VOCAB);
	bj_num(&j, "ctx", LLAMA_CTX);
	bj_close(&j, '}');
	bj_num(&j, "weights_bytes", (double)LLAMA_WEIGHTS_SIZE);
	bj_num(&j, "weight_bytes_per_token", bpt);
	bj_num(&j, "weight_bytes_per_token_shapes", bytes_from_shapes());
	bj_num(&j, "load_seconds", load_s);
	bj_num(&j, "decode_tokens", ndec);
	bj_num(&j, "prefill_tokens", npre);
	bj_num(&j, "prefill_linear_flops", lin);
	bj_num(&j, "prefill_attention_flops", attn);
	bj_num(&j, "runs", BENCH_RUNS);
	bj_open(&j, "threads", '{');
	for (int th = 1; th <= 2; th++) {
		check(llama_set_threads(ctx, th), "set_threads");
		double dec[BENCH_RUNS], pre[BENCH_RUNS], bw[BENCH_RUNS], frac[BENCH_RUNS], bl[BENCH_RUNS], blr[BENCH_RUNS];
		elide_pool *bwpool = elide_pool_create(th);
		bench_read_gbps(bwpool, bwa, nbw, NULL);
#ifdef BENCH_OPENBLAS
		openblas_set_num_threads(th);
		blas_prefill(&blas, npre);
#endif
		/* warm-up: one short decode and one prefill (page faults, pool start) */
		check(llama_reset(ctx), "reset");
		for (int i = 0; i < 4; i++)
			check(llama_step(ctx, toks[i], i, logits), "step");
		check(llama_reset(ctx), "reset");
		check(llama_prefill(ctx, toks, npre, 0, logits), "prefill");
		for (int r = 0; r < BENCH_RUNS; r++) {
			bw[r] = bench_read_gbps(bwpool, bwa, nbw, NULL);
			check(llama_reset(ctx), "reset");
			t0 = bench_seconds();
			int32_t tok = toks[0];
			for (int i = 0; i < ndec; i++) {
				check(llama_step(ctx, tok, i, logits), "step");
				tok = elide_sample_argmax(logits, LLAMA_VOCAB);
			}
			dec[r] = ndec / (bench_seconds() - t0);
			check(llama_reset(ctx), "reset");
			t0 = bench_seconds();
			check(llama_prefill(ctx, toks, npre, 0, logits), "prefill");
			double pt = bench_seconds() - t0;
			pre[r] = npre / pt;
			frac[r] = dec[r] * bpt * 1e-9 / bw[r];
			bl[r] = blr[r] = 0;
#ifdef BENCH_OPENBLAS
			double bt = blas_prefill(&blas, npre);
			bl[r] = lin / bt * 1e-9;
			blr[r] = bt / pt;
#endif
		}
		elide_pool_destroy(bwpool);
		double d = bench_median(dec, BENCH_RUNS), p = bench_median(pre, BENCH_RUNS);
		double b = bench_median(bw, BENCH_RUNS), fr = bench_median(frac, BENCH_RUNS);
		double bg = bench_median(bl, BENCH_RUNS), br = bench_median(blr, BENCH_RUNS);
		char key[8];
		snprintf(key, sizeof key, "%d", th);
		bj_open(&j, key, '{');
		bj_num(&j, "decode_tokens_per_s", d);
		bj_num(&j, "decode_gbps", d * bpt * 1e-9);
		bj_num(&j, "decode_gflops", d * ((lin - 2.0 * LLAMA_VOCAB * LLAMA_DIM) / npre + 2.0 * LLAMA_VOCAB * LLAMA_DIM) * 1e-9);
		bj_num(&j, "prefill_tokens_per_s", p);
		bj_num(&j, "prefill_linear_gflops", p / npre * lin * 1e-9);
		bj_num(&j, "prefill_gflops", p / npre * (lin + attn) * 1e-9);
		bj_num(&j, "paired_read_gbps", b);
		bj_num(&j, "paired_decode_bandwidth_fraction", fr);
		if (bg > 0) {
			bj_num(&j, "paired_openblas_prefill_linear_gflops", bg);
			bj_num(&j, "paired_prefill_vs_openblas", br);
		}
		bj_close(&j, '}');
		printf("%-3s %d thread%s  decode %7.1f tok/s %6.2f GB/s = %3.0f%% of %5.2f GB/s | prefill %7.1f tok/s %6.1f GFLOPS",
		       argv[1], th, th > 1 ? "s" : " ", d, d * bpt * 1e-9, 100 * fr, b, p, p / npre * lin * 1e-9);
		if (bg > 0)
			printf(" = %3.0f%% of OpenBLAS %.1f", 100 * br, bg);
		printf("\n");
		fflush(stdout);
	}
	bj_close(&j, '}');
	bj_end(&j);
	llama_destroy(ctx);
	free(logits);
	free(toks);
	free(bwa);
	return 0;
}
