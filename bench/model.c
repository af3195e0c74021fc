/* model.c - decode and prefill speed of a compiled Llama: built by run.sh with cc
 * against the generated llama.h (examples/llama/llama.elide at the benchmark's
 * shape, seeded random weights), linked with llama.o and the runtime.  For 1 and 2
 * threads: decode tokens/s over NDECODE steps from position 0, and prefill tokens/s
 * of one NPREFILL-token prefill, medians of BENCH_RUNS runs; with the weight bytes
 * touched per decoded token (from the manifest, or computed from the shapes) it
 * reports the decode read rate in GB/s.
 * Usage: bench_model NAME llama.weights NDECODE NPREFILL WEIGHT_BYTES_PER_TOKEN OUT.json */
#include "bench/bench.h"
#include "llama.h"

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
	double d = LLAMA_DIM, kvd = (double)LLAMA_KV_HEADS * (LLAMA_DIM / LLAMA_HEADS), f = LLAMA_FFN;
	double layer = d * d * 2 + kvd * d * 2 + f * d * 3 + 2 * d;
	return 4.0 * (LLAMA_LAYERS * layer + d + (double)LLAMA_VOCAB * d + d);
}

/* FLOPs of the matrix products of a t-token prefill (the last row only through the
 * head), and of its attention (QK^T and AV over the causal prefix). */
static void
prefill_flops(int t, double *linear, double *attn)
{
	double d = LLAMA_DIM, kvd = (double)LLAMA_KV_HEADS * (LLAMA_DIM / LLAMA_HEADS), f = LLAMA_FFN;
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
		double dec[BENCH_RUNS], pre[BENCH_RUNS];
		/* warm-up: one short decode and one prefill (page faults, pool start) */
		check(llama_reset(ctx), "reset");
		for (int i = 0; i < 4; i++)
			check(llama_step(ctx, toks[i], i, logits), "step");
		check(llama_reset(ctx), "reset");
		check(llama_prefill(ctx, toks, npre, 0, logits), "prefill");
		for (int r = 0; r < BENCH_RUNS; r++) {
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
			pre[r] = npre / (bench_seconds() - t0);
		}
		double d = bench_median(dec, BENCH_RUNS), p = bench_median(pre, BENCH_RUNS);
		char key[8];
		snprintf(key, sizeof key, "%d", th);
		bj_open(&j, key, '{');
		bj_num(&j, "decode_tokens_per_s", d);
		bj_num(&j, "decode_gbps", d * bpt * 1e-9);
		bj_num(&j, "decode_gflops", d * ((lin - 2.0 * LLAMA_VOCAB * LLAMA_DIM) / npre + 2.0 * LLAMA_VOCAB * LLAMA_DIM) * 1e-9);
		bj_num(&j, "prefill_tokens_per_s", p);
		bj_num(&j, "prefill_linear_gflops", p / npre * lin * 1e-9);
		bj_num(&j, "prefill_gflops", p / npre * (lin + attn) * 1e-9);
		bj_close(&j, '}');
		printf("%-3s %d thread%s  decode %8.1f tok/s (%6.2f GB/s of weights)   prefill %8.1f tok/s (%6.1f GFLOPS linear)\n",
		       argv[1], th, th > 1 ? "s" : " ", d, d * bpt * 1e-9, p, p / npre * lin * 1e-9);
		fflush(stdout);
	}
	bj_close(&j, '}');
	bj_end(&j);
	llama_destroy(ctx);
	free(logits);
	free(toks);
	return 0;
}
