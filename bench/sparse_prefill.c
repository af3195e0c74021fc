/* sparse_prefill.c - block-sparse prefill (docs/sparse.md) against dense attention:
 * built by sparse_prefill.sh with cc against two generated headers of examples/llama
 * at one shape -- `llama` (dense) and `llamav` (the same model and weights compiled
 * with an `attend prefill` statement) -- both linked into this one process.  For 1 and
 * 2 threads, BENCH_RUNS pairs of NPREFILL-token prefills from position 0 run back to
 * back (dense, then sparse), so both runs of a pair see the same load; the speed-up
 * of a pair is dense time / sparse time, the figure the median over pairs.  It also
 * prints the key blocks a token visited per layer and KV head (the variant's stat
 * slots) against dense, and the relative difference of the last row's logits.
 * Usage: bench_sparse_prefill TAG POLICY_TEXT dense.weights sparse.weights NPREFILL BLOCK OUT.json */
#include "bench/bench.h"
#include "llama.h"
#include "llamav.h"

#include <math.h>

static void
check(int s, const char *what)
{
	if (s != LLAMA_OK) {
		fprintf(stderr, "bench_sparse_prefill: %s failed with status %d\n", what, s);
		exit(1);
	}
}

static double
run_dense(llama_ctx *c, const int32_t *toks, int n, float *out)
{
	check(llama_reset(c), "llama_reset");
	double t0 = bench_seconds();
	check(llama_prefill(c, toks, n, 0, out), "llama_prefill");
	return bench_seconds() - t0;
}

static double
run_sparse(llamav_ctx *c, const int32_t *toks, int n, float *out)
{
	check(llamav_reset(c), "llamav_reset");
	double t0 = bench_seconds();
	check(llamav_prefill(c, toks, n, 0, out), "llamav_prefill");
	return bench_seconds() - t0;
}

int
main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: bench_sparse_prefill TAG POLICY_TEXT dense.weights sparse.weights NPREFILL BLOCK "
		                "OUT.json\n");
		return 2;
	}
	int n = atoi(argv[5]), block = atoi(argv[6]);
	if (n < 1 || n > LLAMA_CTX || block < 1) {
		fprintf(stderr, "bench_sparse_prefill: NPREFILL must be in 1..%d, BLOCK positive\n", LLAMA_CTX);
		return 2;
	}
	llama_ctx *dense = llama_create();
	llamav_ctx *sparse = llamav_create();
	float *ld = malloc(LLAMA_VOCAB * sizeof *ld), *ls = malloc(LLAMA_VOCAB * sizeof *ls);
	int32_t *toks = malloc((size_t)n * sizeof *toks);
	if (!dense || !sparse || !ld || !ls || !toks) {
		fprintf(stderr, "bench_sparse_prefill: out of memory\n");
		return 1;
	}
	check(llama_load_weights(dense, argv[3]), "llama_load_weights");
	check(llamav_load_weights(sparse, argv[4]), "llamav_load_weights");
	uint64_t rng = 17;
	for (int i = 0; i < n; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % LLAMA_VOCAB);

	/* blocks visited per token, layer and kv head: the variant's slots after one prefill */
	run_sparse(sparse, toks, n, ls);
	run_dense(dense, toks, n, ld);
	double visited = 0;
	int nslots = 0;
	for (int s = 0; s < LLAMAV_NSTATS; s++)
		if (strncmp(llamav_stat_name(s), "attend.prefill.", 15) == 0) {
			visited += (double)llamav_stat(sparse, s);
			nslots++;
		}
	visited /= (double)n * LLAMA_KV_HEADS * (nslots ? nslots : 1);
	double all = 0;
	for (int p = 0; p < n; p++)
		all += p / block + 1;
	all /= n;
	double num = 0, den = 0;
	for (int i = 0; i < LLAMA_VOCAB; i++) {
		num += ((double)ld[i] - ls[i]) * ((double)ld[i] - ls[i]);
		den += (double)ld[i] * ld[i];
	}
	double rel = sqrt(num / (den > 0 ? den : 1));

	BenchJson j = bj_begin(argv[7]);
	bj_str(&j, "tag", argv[1]);
	bj_str(&j, "policy", argv[2]);
	bj_num(&j, "prefill_tokens", n);
	bj_num(&j, "block", block);
	bj_num(&j, "sparse_layers", nslots);
	bj_num(&j, "blocks_per_token_sparse", visited);
	bj_num(&j, "blocks_per_token_dense", all);
	bj_num(&j, "last_logits_rel_diff", rel);
	bj_num(&j, "runs", BENCH_RUNS);
	printf("%s: %d-token prefill, key blocks of %d per token, layer and kv head: sparse %.2f, dense %.2f "
	       "(%d sparse layers); last logits differ by %.3g (relative)\n",
	       argv[1], n, block, visited, all, nslots, rel);
	bj_open(&j, "threads", '{');
	for (int th = 1; th <= 2; th++) {
		check(llama_set_threads(dense, th), "llama_set_threads");
		check(llamav_set_threads(sparse, th), "llamav_set_threads");
		run_dense(dense, toks, n < 64 ? n : 64, ld); /* warm-up: page faults, pool start */
		run_sparse(sparse, toks, n < 64 ? n : 64, ls);
		double td[BENCH_RUNS], ts[BENCH_RUNS], sp[BENCH_RUNS];
		for (int r = 0; r < BENCH_RUNS; r++) {
			td[r] = run_dense(dense, toks, n, ld);
			ts[r] = run_sparse(sparse, toks, n, ls);
			sp[r] = td[r] / ts[r];
		}
		double s = bench_median(sp, BENCH_RUNS);
		double d = n / bench_median(td, BENCH_RUNS), p = n / bench_median(ts, BENCH_RUNS);
		char key[4];
		snprintf(key, sizeof key, "%d", th);
		bj_open(&j, key, '{');
		bj_num(&j, "dense_prefill_tokens_per_s", d);
		bj_num(&j, "sparse_prefill_tokens_per_s", p);
		bj_num(&j, "paired_speedup", s);
		bj_close(&j, '}');
		printf("%s %d thread%s  dense %7.1f tok/s  sparse %7.1f tok/s  paired speed-up %.2fx\n", argv[1], th,
		       th > 1 ? "s" : " ", d, p, s);
		fflush(stdout);
	}
	bj_close(&j, '}');
	bj_end(&j);
	llama_destroy(dense);
	llamav_destroy(sparse);
	free(ld);
	free(ls);
	free(toks);
	return 0;
}
