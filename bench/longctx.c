/* longctx.c - long-context decode, Quest against dense: built by run.sh with cc against
 * two generated headers of examples/llama at one long-context shape -- `llama` (dense)
 * and `llamas` (the same model and weights compiled with `attend decode quest(page P,
 * budget B)`) -- both linked into this one process.
 *   1. Both contexts are filled by prefills (2 threads), up to each measured position
 *      in turn (ascending): tokens [0, POS) of one seeded random sequence.  Both models
 *      are compiled with the same `attend prefill block_topk(...) min_tokens 2` (run.sh),
 *      so both run the same code on the same tokens and hold the same keys and values;
 *      a 1-token prefill at POS (fewer than min_tokens rows: dense attention over the
 *      whole cache) must then give bit-identical logits in the two models.
 *   2. At each position and thread count, BENCH_RUNS rounds (LONG_RUNS=N: N); in each
 *      round each model (the order alternates between rounds) runs NSTEP decode steps
 *      at position 16 (the low step), then the prefill of tokens [16, 32) at 16 again
 *      (untimed: it restores the cache and page bounds the low steps overwrote), then
 *      NSTEP steps at position POS (the high step; each step rewrites position POS
 *      with the same token, so every step sees the same cache).  A figure is the mean
 *      of its NSTEP steps, each timed alone after reading a 64 MiB array (no step finds the
 *      previous one's data in the caches).
 *   3. Whole step: the high step's time.  Attention: the high step minus the low step
 *      (the two differ only in the keys attended: the weights are the same, and the
 *      16-position attention of the low step is negligible).  Ratios are dense over
 *      Quest per round, then the median over rounds; times are medians.
 * It also prints the KV bytes each attention reads at the position (the byte bound)
 * and the relative difference of the two models' logits at the position.
 * Usage: bench_longctx NAME dense.weights sparse.weights BUDGET PAGE OUT.json POS...
 * (environment: LONG_THREADS=1 for 1 thread only, LONG_CPU_CLOCK=1 to time with the
 * thread's CPU clock on a loaded machine) */
#include <math.h>

#include "bench/bench.h"
#include "llama.h"
#include "llamas.h"

#define NSTEP 3  /* decode steps per timed figure */
#define LONG_MAX_RUNS 63 /* rounds per figure at most (LONG_RUNS) */
#define LOWPOS 16 /* the low step's position */
#define MAXPOS 8

typedef struct Model {
	const char *name;
	void *ctx;
	int (*step)(void *ctx, int32_t token, int32_t pos, float *out);
	int (*prefill)(void *ctx, const int32_t *toks, int32_t n, int32_t pos, float *out);
	int (*threads)(void *ctx, int n);
} Model;

static int d_step(void *c, int32_t t, int32_t p, float *o) { return llama_step(c, t, p, o); }
static int d_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llama_prefill(c, t, n, p, o); }
static int d_threads(void *c, int n) { return llama_set_threads(c, n); }
static int s_step(void *c, int32_t t, int32_t p, float *o) { return llamas_step(c, t, p, o); }
static int s_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llamas_prefill(c, t, n, p, o); }
static int s_threads(void *c, int n) { return llamas_set_threads(c, n); }

static void
check(int s, const char *who, const char *what)
{
	if (s != LLAMA_OK) {
		fprintf(stderr, "bench_longctx: %s %s failed with status %d\n", who, what, s);
		exit(1);
	}
}

/* Prefill of toks[from, to) at position from, in chunks of at most 1024 tokens. */
static void
fill(const Model *m, const int32_t *toks, int from, int to, float *logits)
{
	for (int p = from; p < to; p += 1024) {
		int n = to - p < 1024 ? to - p : 1024;
		check(m->prefill(m->ctx, toks + p, n, p, logits), m->name, "prefill");
	}
}

/* LONG_CPU_CLOCK=1: the calling thread's CPU time instead of the wall clock (on a
 * machine shared with other work, for the 1-thread figures only) */
static int cpu_clock;

static double
now(void)
{
	if (!cpu_clock)
		return bench_seconds();
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An array twice the size of the last-level cache of most machines, read before each
 * timed step so that no step finds the previous one's keys and values in the caches
 * (with the M shape's weights it would not anyway; with a small model it would) */
#define FLUSH_FLOATS (16 << 20)
static float *flush_buf;

static void
flush_caches(void)
{
	volatile float sink = 0;
	float acc = 0;
	for (int64_t i = 0; i < FLUSH_FLOATS; i += 16)
		acc += flush_buf[i];
	sink = acc;
	(void)sink;
}

/* Mean seconds of NSTEP steps at pos with token tok, each after a cache flush. */
static double
steps_at(const Model *m, int32_t tok, int pos, float *logits)
{
	double t = 0;
	for (int i = 0; i < NSTEP; i++) {
		flush_caches();
		double t0 = now();
		check(m->step(m->ctx, tok, pos, logits), m->name, "step");
		t += now() - t0;
	}
	return t / NSTEP;
}

/* One round for model m at pos: *lo and *hi receive the low and the high step. */
static void
round_at(const Model *m, const int32_t *toks, int pos, float *logits, double *lo, double *hi)
{
	*lo = steps_at(m, toks[LOWPOS], LOWPOS, logits);
	fill(m, toks, LOWPOS, 2 * LOWPOS, logits);
	*hi = steps_at(m, toks[pos], pos, logits);
}

int
main(int argc, char **argv)
{
	if (argc < 8 || argc > 7 + MAXPOS) {
		fprintf(stderr, "usage: bench_longctx NAME dense.weights sparse.weights BUDGET PAGE OUT.json POS...\n");
		return 2;
	}
	int budget = atoi(argv[4]), page = atoi(argv[5]), npos = argc - 7, pos[MAXPOS];
	for (int i = 0; i < npos; i++) {
		pos[i] = atoi(argv[7 + i]);
		if (pos[i] < 2 * LOWPOS || pos[i] >= LLAMA_CTX || (i > 0 && pos[i] <= pos[i - 1])) {
			fprintf(stderr, "bench_longctx: positions must ascend within %d..%d\n", 2 * LOWPOS, LLAMA_CTX - 1);
			return 2;
		}
	}
	if (budget < 1 || page < 1) {
		fprintf(stderr, "bench_longctx: BUDGET and PAGE must be positive\n");
		return 2;
	}
	cpu_clock = getenv("LONG_CPU_CLOCK") && atoi(getenv("LONG_CPU_CLOCK")) == 1;
	/* LONG_THREADS=1: the 1-thread figures only */
	int maxth = getenv("LONG_THREADS") && atoi(getenv("LONG_THREADS")) == 1 ? 1 : 2;
	/* LONG_RUNS=N: N rounds per figure (the medians of a noisy step settle) */
	int runs = getenv("LONG_RUNS") ? atoi(getenv("LONG_RUNS")) : BENCH_RUNS;
	if (runs < 1 || runs > LONG_MAX_RUNS) {
		fprintf(stderr, "bench_longctx: LONG_RUNS must be in 1..%d\n", LONG_MAX_RUNS);
		return 2;
	}
	llama_ctx *dense = llama_create();
	llamas_ctx *sparse = llamas_create();
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits), *ref = malloc(LLAMA_VOCAB * sizeof *ref);
	int32_t *toks = malloc(LLAMA_CTX * sizeof *toks);
	flush_buf = bench_sum_array(FLUSH_FLOATS);
	if (!dense || !sparse || !logits || !ref || !toks || !flush_buf) {
		fprintf(stderr, "bench_longctx: out of memory\n");
		return 1;
	}
	check(llama_load_weights(dense, argv[2]), "dense", "load_weights");
	check(llamas_load_weights(sparse, argv[3]), "quest", "load_weights");
	Model md = { "dense", dense, d_step, d_prefill, d_threads };
	Model ms = { "quest", sparse, s_step, s_prefill, s_threads };
	const Model *mods[2] = { &md, &ms };
	uint64_t rng = 29;
	for (int i = 0; i < LLAMA_CTX; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % LLAMA_VOCAB);

	/* KV bytes read per token at a position: dense every key and value; Quest the
	 * page bounds (min and max per channel as bf16: one row's bytes per page) and the
	 * chosen pages (max(3, B / P) and the current one) */
	const double row = (double)LLAMA_KV_HEADS * (LLAMA_DIM / LLAMA_HEADS) * 4 * LLAMA_LAYERS;
	int kp = budget / page > 3 ? budget / page : 3;

	BenchJson j = bj_begin(argv[6]);
	bj_str(&j, "name", argv[1]);
	bj_num(&j, "dim", LLAMA_DIM);
	bj_num(&j, "layers", LLAMA_LAYERS);
	bj_num(&j, "heads", LLAMA_HEADS);
	bj_num(&j, "kv_heads", LLAMA_KV_HEADS);
	bj_num(&j, "ctx", LLAMA_CTX);
	bj_num(&j, "budget", budget);
	bj_num(&j, "page", page);
	bj_num(&j, "steps_per_figure", NSTEP);
	bj_num(&j, "runs", runs);
	bj_num(&j, "low_position", LOWPOS);
	bj_str(&j, "clock", cpu_clock ? "thread cpu time" : "wall");
	bj_open(&j, "positions", '[');
	int filled = 0;
	double fill_s[2] = { 0, 0 };
	for (int i = 0; i < npos; i++) {
		int P = pos[i];
		for (int m = 0; m < 2; m++) {
			double t0 = bench_seconds();
			check(mods[m]->threads(mods[m]->ctx, 2), mods[m]->name, "set_threads");
			fill(mods[m], toks, filled, P, logits);
			double t = bench_seconds() - t0;
			fill_s[m] += t;
			fprintf(stderr, "%s %s: prefill of positions %d..%d in %.1f s\n", argv[1], mods[m]->name, filled,
			        P - 1, t);
		}
		filled = P;
		/* the two caches: a 1-token prefill at P attends densely to [0, P] in both
		 * models (it rewrites position P, as every step below does) */
		check(md.prefill(dense, toks + P, 1, P, ref), "dense", "prefill");
		check(ms.prefill(sparse, toks + P, 1, P, logits), "quest", "prefill");
		int same_cache = memcmp(ref, logits, LLAMA_VOCAB * sizeof *ref) == 0;
		if (!same_cache) {
			fprintf(stderr, "bench_longctx: the two models' caches differ at position %d\n", P);
			return 1;
		}
		/* np pages, the last (current) one holding P - (np - 1) * page + 1 positions */
		int np = (P + 1 + page - 1) / page;
		double kv_dense = 2.0 * (P + 1) * row;
		double kv_quest = np - 1 > kp ? 1.0 * (np - 1) * row + 2.0 * (kp * page + P - (np - 1) * page + 1) * row
		                              : kv_dense;
		/* the two models' logits at the position */
		check(llama_step(dense, toks[P], P, ref), "dense", "step");
		check(llamas_step(sparse, toks[P], P, logits), "quest", "step");
		double num = 0, den = 0;
		for (int v = 0; v < LLAMA_VOCAB; v++) {
			num += ((double)logits[v] - ref[v]) * ((double)logits[v] - ref[v]);
			den += (double)ref[v] * ref[v];
		}
		bj_open(&j, NULL, '{');
		bj_num(&j, "position", P);
		bj_num(&j, "dense_kv_bytes_per_token", kv_dense);
		bj_num(&j, "quest_kv_bytes_per_token", kv_quest);
		bj_num(&j, "kv_bytes_ratio", kv_dense / kv_quest);
		bj_num(&j, "logits_rel_diff", den > 0 ? sqrt(num / den) : 0);
		bj_num(&j, "fill_seconds_dense", fill_s[0]);
		bj_num(&j, "fill_seconds_quest", fill_s[1]);
		bj_num(&j, "caches_equal", same_cache);
		bj_num(&j, "argmax_equal", elide_sample_argmax(ref, LLAMA_VOCAB) == elide_sample_argmax(logits, LLAMA_VOCAB));
		bj_open(&j, "threads", '{');
		for (int th = 1; th <= maxth; th++) {
			for (int m = 0; m < 2; m++) {
				check(mods[m]->threads(mods[m]->ctx, th), mods[m]->name, "set_threads");
				steps_at(mods[m], toks[P], P, logits); /* warm-up */
			}
			double lo[2][LONG_MAX_RUNS], hi[2][LONG_MAX_RUNS], at[2][LONG_MAX_RUNS], ra[LONG_MAX_RUNS],
				rs[LONG_MAX_RUNS];
			for (int r = 0; r < runs; r++) {
				for (int k = 0; k < 2; k++) {
					int m = (r + k) % 2;
					round_at(mods[m], toks, P, logits, &lo[m][r], &hi[m][r]);
				}
				for (int m = 0; m < 2; m++)
					at[m][r] = hi[m][r] - lo[m][r];
				rs[r] = hi[0][r] / hi[1][r];
				ra[r] = at[1][r] > 0 ? at[0][r] / at[1][r] : 0;
			}
			double s = bench_median(rs, runs), a = bench_median(ra, runs);
			double hd = bench_median(hi[0], runs), hs = bench_median(hi[1], runs);
			double ad = bench_median(at[0], runs), as = bench_median(at[1], runs);
			double ld = bench_median(lo[0], runs), ls = bench_median(lo[1], runs);
			char key[4];
			snprintf(key, sizeof key, "%d", th);
			bj_open(&j, key, '{');
			bj_num(&j, "dense_step_ms", hd * 1e3);
			bj_num(&j, "quest_step_ms", hs * 1e3);
			bj_num(&j, "dense_low_step_ms", ld * 1e3);
			bj_num(&j, "quest_low_step_ms", ls * 1e3);
			bj_num(&j, "dense_attention_ms", ad * 1e3);
			bj_num(&j, "quest_attention_ms", as * 1e3);
			bj_num(&j, "dense_tokens_per_s", 1 / hd);
			bj_num(&j, "quest_tokens_per_s", 1 / hs);
			bj_num(&j, "paired_step_speedup", s);
			bj_num(&j, "paired_attention_speedup", a);
			bj_num(&j, "dense_attention_gbps", ad > 0 ? kv_dense / ad * 1e-9 : 0);
			bj_num(&j, "quest_attention_gbps", as > 0 ? kv_quest / as * 1e-9 : 0);
			bj_close(&j, '}');
			printf("%-5s pos %5d %d thread%s  step %6.1f -> %6.1f ms (%5.1f -> %5.1f tok/s) %5.2fx  "
			       "attention %6.2f -> %5.2f ms %5.2fx  (KV bytes %.2fx)\n",
			       argv[1], P, th, th > 1 ? "s" : " ", hd * 1e3, hs * 1e3, 1 / hd, 1 / hs, s, ad * 1e3,
			       as * 1e3, a, kv_dense / kv_quest);
			fflush(stdout);
		}
		bj_close(&j, '}');
		bj_close(&j, '}');
	}
	bj_close(&j, ']');
	bj_end(&j);
	llama_destroy(dense);
	llamas_destroy(sparse);
	free(logits);
	free(ref);
	free(toks);
	free(flush_buf);
	return 0;
}
