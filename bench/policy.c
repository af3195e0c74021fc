/* policy.c - decode speed-up of a policy against the dense model, and against the
 * weight bytes per token it saves: built by run.sh with cc against two generated
 * headers of examples/llama at one benchmark shape -- `llama` (dense) and the variant
 * VARIANT (the same model compiled with the policy POLICY_TEXT: structured pruning,
 * early exit, a SkipDecode schedule...) -- both linked into this one process.  For 1
 * and 2 threads, BENCH_RUNS pairs of NDECODE-step greedy decodes run back to back
 * (dense, then the variant), so that both runs of a pair see the same load; the
 * speed-up of a pair is dense time / variant time, and the figure is the median over
 * pairs.  The ratio of weight bytes touched per token (dense over the variant's, from
 * the manifests: for early exit the bytes of the exit path, for a schedule the
 * average over the decode) is the speed-up a purely bandwidth-bound decode would get.
 * Build: cc -DVARIANT=llamahalf -DVARIANT_HEADER='"llamahalf.h"' ...
 * Usage: bench_policy NAME POLICY_TEXT dense.weights variant.weights NDECODE
 *                     DENSE_BYTES_PER_TOKEN VARIANT_BYTES_PER_TOKEN OUT.json */
#include "bench/bench.h"
#include "llama.h"
#include VARIANT_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define V(fn) CAT(VARIANT, CAT(_, fn)) /* V(step) -> llamahalf_step */

/* The two calls a decode run needs, behind BenchModel's signatures. */
static int dense_reset(void *c) { return llama_reset(c); }
static int dense_step(void *c, int32_t t, int32_t p, float *o) { return llama_step(c, t, p, o); }
static int variant_reset(void *c) { return V(reset)(c); }
static int variant_step(void *c, int32_t t, int32_t p, float *o) { return V(step)(c, t, p, o); }

int
main(int argc, char **argv)
{
	bench_prog = "bench_policy";
	if (argc != 9) {
		fprintf(stderr, "usage: bench_policy NAME POLICY_TEXT dense.weights pruned.weights NDECODE "
		                "DENSE_BYTES_PER_TOKEN PRUNED_BYTES_PER_TOKEN OUT.json\n");
		return 2;
	}
	int ndec = atoi(argv[5]);
	double bdense = atof(argv[6]), bpruned = atof(argv[7]);
	if (ndec < 1 || ndec > LLAMA_CTX || bdense <= 0 || bpruned <= 0) {
		fprintf(stderr, "bench_policy: NDECODE must be in 1..%d and the byte counts positive\n", LLAMA_CTX);
		return 2;
	}
	llama_ctx *dense = llama_create();
	V(ctx) *pruned = V(create)();
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits);
	int32_t *toks = malloc((size_t)ndec * sizeof *toks);
	if (!dense || !pruned || !logits || !toks) {
		fprintf(stderr, "bench_policy: out of memory\n");
		return 1;
	}
	bench_check(llama_load_weights(dense, argv[3]), "llama_load_weights");
	bench_check(V(load_weights)(pruned, argv[4]), "variant load_weights");
	BenchModel md = { "dense decode", dense, LLAMA_VOCAB, dense_reset, dense_step, NULL };
	BenchModel mp = { "variant decode", pruned, LLAMA_VOCAB, variant_reset, variant_step, NULL };
	bench_tokens(toks, ndec, LLAMA_VOCAB);

	BenchJson j = bj_begin(argv[8]);
	bj_str(&j, "name", argv[1]);
	bj_str(&j, "policy", argv[2]);
	bj_num(&j, "dense_ffn", LLAMA_FFN);
	bj_num(&j, "dense_weights_bytes", (double)LLAMA_WEIGHTS_SIZE);
	bj_num(&j, "dense_weight_bytes_per_token", bdense);
	bj_num(&j, "variant_weight_bytes_per_token", bpruned);
	bj_num(&j, "bytes_ratio", bdense / bpruned);
	bj_num(&j, "decode_tokens", ndec);
	bj_num(&j, "runs", BENCH_RUNS);
	bj_open(&j, "threads", '{');
	for (int th = 1; th <= 2; th++) {
		bench_check(llama_set_threads(dense, th), "llama_set_threads");
		bench_check(V(set_threads)(pruned, th), "variant set_threads");
		/* warm-up: page faults, pool start */
		bench_decode_run(&md, toks, 8, logits);
		bench_decode_run(&mp, toks, 8, logits);
		double td[BENCH_RUNS], tp[BENCH_RUNS];
		double s = bench_paired(bench_decode_run, &md, &mp, toks, ndec, logits, td, tp);
		double d = ndec / bench_median(td, BENCH_RUNS), p = ndec / bench_median(tp, BENCH_RUNS);
		char key[4];
		snprintf(key, sizeof key, "%d", th);
		bj_open(&j, key, '{');
		bj_num(&j, "dense_decode_tokens_per_s", d);
		bj_num(&j, "variant_decode_tokens_per_s", p);
		bj_num(&j, "paired_speedup", s);
		bj_num(&j, "speedup_over_bytes_ratio", s / (bdense / bpruned));
		bj_close(&j, '}');
		printf("%-3s %d thread%s  dense %6.1f tok/s  variant %6.1f tok/s  speed-up %.2fx  bytes ratio %.2fx  "
		       "speed-up / bytes ratio %.2f\n",
		       argv[1], th, th > 1 ? "s" : " ", d, p, s, bdense / bpruned, s / (bdense / bpruned));
		fflush(stdout);
	}
	bj_close(&j, '}');
	bj_end(&j);
	llama_destroy(dense);
	V(destroy)(pruned);
	free(logits);
	free(toks);
	return 0;
}
