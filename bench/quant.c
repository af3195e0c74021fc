/* quant.c - quantised weights against f32: built by run.sh with cc against two
 * generated headers of examples/llama at one benchmark shape -- `llama` (f32) and
 * `llamaq` (the same model compiled with --quantize=FORMAT: q8 and q4 with int8
 * activations, the default; q8f and q4f with --activations=f32) -- both linked
 * into this one process, on the same seeded
 * weights.  For 1 and 2 threads, BENCH_RUNS pairs of NDECODE-step greedy decodes
 * and BENCH_RUNS pairs of NPREFILL-token prefills run back to back (f32, then
 * quantised), so that both runs of a pair see the same load; a speed-up is f32 time
 * / quantised time of a pair, the figure the median over pairs.  It also reports
 * the blob sizes and their ratio, and the ratio of weight bytes per decoded token
 * (from the manifests): the decode speed-up a purely bandwidth-bound decode gets.
 * Usage: bench_quant NAME FORMAT f32.weights q.weights NDECODE NPREFILL
 *                    F32_BYTES_PER_TOKEN Q_BYTES_PER_TOKEN OUT.json */
#include "bench/bench.h"
#include "llama.h"
#include "llamaq.h"

/* The calls a run needs, behind BenchModel's signatures. */
static int f_reset(void *c) { return llama_reset(c); }
static int f_step(void *c, int32_t t, int32_t p, float *o) { return llama_step(c, t, p, o); }
static int f_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llama_prefill(c, t, n, p, o); }
static int q_reset(void *c) { return llamaq_reset(c); }
static int q_step(void *c, int32_t t, int32_t p, float *o) { return llamaq_step(c, t, p, o); }
static int q_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llamaq_prefill(c, t, n, p, o); }

int
main(int argc, char **argv)
{
	bench_prog = "bench_quant";
	if (argc != 10) {
		fprintf(stderr, "usage: bench_quant NAME FORMAT f32.weights q.weights NDECODE NPREFILL "
		                "F32_BYTES_PER_TOKEN Q_BYTES_PER_TOKEN OUT.json\n");
		return 2;
	}
	int ndec = atoi(argv[5]), npre = atoi(argv[6]);
	double bf = atof(argv[7]), bq = atof(argv[8]);
	if (ndec < 1 || ndec > LLAMA_CTX || npre < 1 || npre > LLAMA_CTX || bf <= 0 || bq <= 0) {
		fprintf(stderr, "bench_quant: NDECODE and NPREFILL must be in 1..%d and the byte counts positive\n", LLAMA_CTX);
		return 2;
	}
	_Static_assert(LLAMA_VOCAB == LLAMAQ_VOCAB && LLAMA_CTX == LLAMAQ_CTX, "the two models share their shape");
	llama_ctx *cf = llama_create();
	llamaq_ctx *cq = llamaq_create();
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits);
	int32_t *toks = malloc((size_t)LLAMA_CTX * sizeof *toks);
	if (!cf || !cq || !logits || !toks) {
		fprintf(stderr, "bench_quant: out of memory\n");
		return 1;
	}
	bench_check(llama_load_weights(cf, argv[3]), "llama_load_weights");
	bench_check(llamaq_load_weights(cq, argv[4]), "llamaq_load_weights");
	BenchModel mf = { "f32", cf, LLAMA_VOCAB, f_reset, f_step, f_prefill };
	BenchModel mq = { "quantised", cq, LLAMA_VOCAB, q_reset, q_step, q_prefill };
	bench_tokens(toks, LLAMA_CTX, LLAMA_VOCAB);

	BenchJson j = bj_begin(argv[9]);
	bj_str(&j, "name", argv[1]);
	bj_str(&j, "format", argv[2]);
	bj_num(&j, "f32_weights_bytes", (double)LLAMA_WEIGHTS_SIZE);
	bj_num(&j, "q_weights_bytes", (double)LLAMAQ_WEIGHTS_SIZE);
	bj_num(&j, "blob_ratio", (double)LLAMAQ_WEIGHTS_SIZE / (double)LLAMA_WEIGHTS_SIZE);
	bj_num(&j, "f32_weight_bytes_per_token", bf);
	bj_num(&j, "q_weight_bytes_per_token", bq);
	bj_num(&j, "bytes_ratio", bf / bq);
	bj_num(&j, "decode_tokens", ndec);
	bj_num(&j, "prefill_tokens", npre);
	bj_num(&j, "runs", BENCH_RUNS);
	bj_open(&j, "threads", '{');
	for (int th = 1; th <= 2; th++) {
		bench_check(llama_set_threads(cf, th), "llama_set_threads");
		bench_check(llamaq_set_threads(cq, th), "llamaq_set_threads");
		bench_decode_run(&mf, toks, 8, logits);
		bench_decode_run(&mq, toks, 8, logits);
		bench_prefill_run(&mf, toks, npre, logits);
		bench_prefill_run(&mq, toks, npre, logits);
		double df[BENCH_RUNS], dq[BENCH_RUNS], pf[BENCH_RUNS], pq[BENCH_RUNS];
		double sd = bench_paired(bench_decode_run, &mf, &mq, toks, ndec, logits, df, dq);
		double sp = bench_paired(bench_prefill_run, &mf, &mq, toks, npre, logits, pf, pq);
		double d1 = ndec / bench_median(df, BENCH_RUNS), d2 = ndec / bench_median(dq, BENCH_RUNS);
		double p1 = npre / bench_median(pf, BENCH_RUNS), p2 = npre / bench_median(pq, BENCH_RUNS);
		char key[4];
		snprintf(key, sizeof key, "%d", th);
		bj_open(&j, key, '{');
		bj_num(&j, "f32_decode_tokens_per_s", d1);
		bj_num(&j, "q_decode_tokens_per_s", d2);
		bj_num(&j, "paired_decode_speedup", sd);
		bj_num(&j, "decode_speedup_over_bytes_ratio", sd / (bf / bq));
		bj_num(&j, "f32_prefill_tokens_per_s", p1);
		bj_num(&j, "q_prefill_tokens_per_s", p2);
		bj_num(&j, "paired_prefill_speedup", sp);
		bj_close(&j, '}');
		printf("%-3s %-6s %d thread%s  decode %6.1f -> %6.1f tok/s (%.2fx, bytes %.2fx)  prefill %6.1f -> %6.1f tok/s "
		       "(%.2fx)\n",
		       argv[1], argv[2], th, th > 1 ? "s" : " ", d1, d2, sd, bf / bq, p1, p2, sp);
		fflush(stdout);
	}
	bj_close(&j, '}');
	bj_end(&j);
	llama_destroy(cf);
	llamaq_destroy(cq);
	free(logits);
	free(toks);
	return 0;
}
