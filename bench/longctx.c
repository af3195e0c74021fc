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
 *   2. Attention is timed directly: both models run every parallel task through this
 *      program's parallel-for hook (NAME_set_parallel_for; with 1 thread too, on a
 *      1-thread pool), which forwards to elide_pool_parallel_for on a pool created here
 *      per thread count and times the calls whose task is an attention task (a local
 *      symbol `MODEL.attention...`, `MODEL.quest...` or `MODEL.ablock...` of this
 *      executable, bench/elfsyms.h).  Each step must make one attention call per
 *      layer, or the program stops: the figure can never silently be 0.
 *   3. At each position and thread count, LONG_RUNS rounds (default BENCH_RUNS); a
 *      round is NSTEP slots, a slot four single steps at POS, each after reading a 64
 *      MiB array (no step finds the previous one's data in the caches): both models
 *      with the hook, then both with the plain parallel-for (the generated serial path
 *      at 1 thread, elide_pool_parallel_for at 2), the model order and the hooked /
 *      plain order alternating from slot to slot (d q q d, q d d q, ...), so a dense
 *      and a Quest step are milliseconds apart.  Each step rewrites position POS with
 *      the same token, so every step sees the same cache.
 *   4. Per round and model: the mean hooked step, the mean attention time inside it,
 *      the rest (step - attention) and the mean plain step.  Ratios are dense over
 *      Quest per round, then the median over rounds; times are medians over rounds.
 *      The hook's overhead is the median over rounds of hooked / plain step - 1.
 * It also prints the KV bytes each attention reads at the position (the byte bound),
 * the step's byte bound with the weights' bytes per token, and the relative
 * difference of the two models' logits at the position.
 * Usage: bench_longctx NAME FORMAT WEIGHT_BYTES dense.weights sparse.weights BUDGET PAGE
 *          OUT.json POS...
 * (FORMAT: the weights' format, recorded; WEIGHT_BYTES: weight bytes per decoded token
 * from the manifest; environment: LONG_THREADS=1 for 1 thread only, LONG_CPU_CLOCK=1
 * to time with the thread's CPU clock on a loaded machine, LONG_RUNS=N rounds,
 * LONG_COMPILE_FLAGS recorded as given) */
#include <math.h>

#include "bench/bench.h"
#include "bench/elfsyms.h"
#include "llama.h"
#include "llamas.h"

#define NSTEP 3          /* slots (steps of each model and kind) per round */
#define LONG_MAX_RUNS 63 /* rounds per figure at most (LONG_RUNS) */
#define MAXPOS 8
#define MAXTASKS 64      /* attention task symbols at most */

/* The parallel-for hook of one model: forwards every call to the pool and times the
 * attention tasks' calls. */
typedef struct Hook {
	elide_pool *pool;       /* the bench's pool for the thread count */
	const uintptr_t *attn;  /* addresses of the attention tasks (both models') */
	int nattn;
	double attn_s;          /* seconds in attention calls since the last reset */
	int attn_calls;         /* attention calls since the last reset */
	int calls;              /* all calls since the last reset */
} Hook;

typedef struct Model {
	const char *name;
	void *ctx;
	int (*step)(void *ctx, int32_t token, int32_t pos, float *out);
	int (*prefill)(void *ctx, const int32_t *toks, int32_t n, int32_t pos, float *out);
	void (*set_pfor)(void *ctx, elide_parallel_for_fn fn, void *pool);
	Hook hook;
} Model;

static int d_step(void *c, int32_t t, int32_t p, float *o) { return llama_step(c, t, p, o); }
static int d_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llama_prefill(c, t, n, p, o); }
static void d_pfor(void *c, elide_parallel_for_fn f, void *p) { llama_set_parallel_for(c, f, p); }
static int s_step(void *c, int32_t t, int32_t p, float *o) { return llamas_step(c, t, p, o); }
static int s_prefill(void *c, const int32_t *t, int32_t n, int32_t p, float *o) { return llamas_prefill(c, t, n, p, o); }
static void s_pfor(void *c, elide_parallel_for_fn f, void *p) { llamas_set_parallel_for(c, f, p); }

static void
check(int s, const char *who, const char *what)
{
	if (s != LLAMA_OK) {
		fprintf(stderr, "bench_longctx: %s %s failed with status %d\n", who, what, s);
		exit(1);
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

static void
hook_pfor(void *user, int64_t n, elide_task_fn fn, void *ctx)
{
	Hook *h = user;
	uintptr_t a = (uintptr_t)fn;
	h->calls++;
	for (int i = 0; i < h->nattn; i++)
		if (h->attn[i] == a) {
			double t0 = now();
			elide_pool_parallel_for(h->pool, n, fn, ctx);
			h->attn_s += now() - t0;
			h->attn_calls++;
			return;
		}
	elide_pool_parallel_for(h->pool, n, fn, ctx);
}

/* The model's tasks through the timing hook on pool. */
static void
use_hook(Model *m, elide_pool *pool)
{
	m->hook.pool = pool;
	m->set_pfor(m->ctx, hook_pfor, &m->hook);
}

/* The model's tasks as a plain caller runs them: serial at 1 thread (the generated
 * code's own loop, as NAME_set_threads(ctx, 1) leaves it), else the pool's parallel-for. */
static void
use_plain(Model *m, elide_pool *pool, int threads)
{
	if (threads == 1)
		m->set_pfor(m->ctx, NULL, NULL);
	else
		m->set_pfor(m->ctx, elide_pool_parallel_for, pool);
}

/* An attention task of model `model`: "MODEL.KIND..." with KIND attention, quest or
 * ablock (the names codegen gives the dense, Quest and block-sparse attention tasks) */
static int
attention_of(const char *name, const char *model)
{
	size_t n = strlen(model);
	if (strncmp(name, model, n) != 0 || name[n] != '.')
		return 0;
	name += n + 1;
	return strncmp(name, "attention.", 10) == 0 || strncmp(name, "quest.", 6) == 0 ||
	       strncmp(name, "ablock.", 7) == 0;
}

static int
keep_attention(const char *name, void *arg)
{
	(void)arg;
	return attention_of(name, "llama") || attention_of(name, "llamas");
}

static void
empty_task(void *ctx, int64_t begin, int64_t end)
{
	(void)ctx;
	(void)begin;
	(void)end;
}

/* The hook's own cost per call in ns, on an empty task through the 1-thread pool,
 * against elide_pool_parallel_for called directly: *fwd for a call it only forwards,
 * *timed for one it times as attention (the empty task put in its table); the
 * medians of 7 alternating runs of 100000 calls. */
static void
hook_cost(elide_pool *pool1, const Hook *model, double *fwd, double *timed)
{
	enum { CALLS = 100000, REPS = 7 };
	uintptr_t tab[MAXTASKS + 1];
	memcpy(tab, model->attn, (size_t)model->nattn * sizeof *tab);
	tab[model->nattn] = (uintptr_t)empty_task; /* scanned last: the longest lookup */
	Hook hf = { pool1, model->attn, model->nattn, 0, 0, 0 }, ht = { pool1, tab, model->nattn + 1, 0, 0, 0 };
	double d[3][REPS];
	for (int r = 0; r < REPS; r++)
		for (int k = 0; k < 3; k++) {
			double t0 = bench_seconds();
			for (int i = 0; i < CALLS; i++) {
				if (k == 0)
					elide_pool_parallel_for(pool1, 1, empty_task, NULL);
				else
					hook_pfor(k == 1 ? &hf : &ht, 1, empty_task, NULL);
			}
			d[k][r] = (bench_seconds() - t0) * 1e9 / CALLS;
		}
	double base = bench_median(d[0], REPS);
	*fwd = bench_median(d[1], REPS) - base;
	*timed = bench_median(d[2], REPS) - base;
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

/* One step of m at pos with token tok after a cache flush: its seconds, and with the
 * hook installed the seconds of its attention calls in *attn (one call per layer, or
 * the program stops). */
static double
step_at(Model *m, int32_t tok, int pos, float *logits, double *attn)
{
	flush_caches();
	m->hook.attn_s = 0;
	m->hook.attn_calls = 0;
	m->hook.calls = 0;
	double t0 = now();
	check(m->step(m->ctx, tok, pos, logits), m->name, "step");
	double t = now() - t0;
	if (attn) {
		if (m->hook.attn_calls != LLAMA_LAYERS) {
			fprintf(stderr, "bench_longctx: a %s step made %d attention calls, not %d (one per layer)\n",
			        m->name, m->hook.attn_calls, LLAMA_LAYERS);
			exit(1);
		}
		*attn = m->hook.attn_s;
	}
	return t;
}

/* Figures of one position and thread count, per round r: hooked step, attention, the
 * rest, plain step; [model][round] */
typedef struct Rounds {
	double step[2][LONG_MAX_RUNS], attn[2][LONG_MAX_RUNS], other[2][LONG_MAX_RUNS], plain[2][LONG_MAX_RUNS];
} Rounds;

/* Round r: NSTEP slots of four steps at pos (see the header, step 3), means per model. */
static void
round_at(Model *mods[2], elide_pool *pool, int threads, int32_t tok, int pos, float *logits, int r, Rounds *o)
{
	double sh[2] = { 0, 0 }, sa[2] = { 0, 0 }, sp[2] = { 0, 0 };
	for (int i = 0; i < NSTEP; i++) {
		int s = r * NSTEP + i, first = s % 2, hooked_first = (s / 2) % 2;
		for (int kind = 0; kind < 2; kind++) {
			int hooked = kind == 0 ? hooked_first : !hooked_first;
			for (int k = 0; k < 2; k++) {
				/* d q | q d within a slot: the second pair mirrors the first */
				int m = kind == 0 ? (first + k) % 2 : (first + 1 + k) % 2;
				double a = 0;
				if (hooked) {
					use_hook(mods[m], pool);
					sh[m] += step_at(mods[m], tok, pos, logits, &a);
					sa[m] += a;
				} else {
					use_plain(mods[m], pool, threads);
					sp[m] += step_at(mods[m], tok, pos, logits, NULL);
				}
			}
		}
	}
	for (int m = 0; m < 2; m++) {
		o->step[m][r] = sh[m] / NSTEP;
		o->attn[m][r] = sa[m] / NSTEP;
		o->other[m][r] = (sh[m] - sa[m]) / NSTEP;
		o->plain[m][r] = sp[m] / NSTEP;
	}
}

/* The q-quantile (0 <= q <= 1, linear between order statistics) over rounds of
 * a[r] / b[r]; 0.5: the median. */
static double
ratio_quantile(const double *a, const double *b, int runs, double q)
{
	double v[LONG_MAX_RUNS];
	for (int r = 0; r < runs; r++)
		v[r] = b[r] > 0 ? a[r] / b[r] : 0;
	if (q == 0.5)
		return bench_median(v, runs);
	qsort(v, (size_t)runs, sizeof *v, bench_cmp_double);
	double x = q * (runs - 1);
	int k = (int)x;
	return k + 1 < runs ? v[k] + (x - k) * (v[k + 1] - v[k]) : v[k];
}

static double
median_ratio(const double *a, const double *b, int runs)
{
	return ratio_quantile(a, b, runs, 0.5);
}

static double
median_of(const double *a, int runs)
{
	double v[LONG_MAX_RUNS];
	memcpy(v, a, (size_t)runs * sizeof *v);
	return bench_median(v, runs);
}

/* A string for the JSON writer (which does not escape): no quote, backslash or control. */
static int
plain_string(const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			return 0;
	return 1;
}

int
main(int argc, char **argv)
{
	if (argc < 10 || argc > 9 + MAXPOS) {
		fprintf(stderr, "usage: bench_longctx NAME FORMAT WEIGHT_BYTES dense.weights sparse.weights BUDGET PAGE "
		                "OUT.json POS...\n");
		return 2;
	}
	const char *format = argv[2], *flags = getenv("LONG_COMPILE_FLAGS") ? getenv("LONG_COMPILE_FLAGS") : "";
	double wbytes = atof(argv[3]);
	int budget = atoi(argv[6]), page = atoi(argv[7]), npos = argc - 9, pos[MAXPOS];
	for (int i = 0; i < npos; i++) {
		pos[i] = atoi(argv[9 + i]);
		if (pos[i] < 1 || pos[i] >= LLAMA_CTX || (i > 0 && pos[i] <= pos[i - 1])) {
			fprintf(stderr, "bench_longctx: positions must ascend within 1..%d\n", LLAMA_CTX - 1);
			return 2;
		}
	}
	if (budget < 1 || page < 1 || !(wbytes > 0)) {
		fprintf(stderr, "bench_longctx: BUDGET, PAGE and WEIGHT_BYTES must be positive\n");
		return 2;
	}
	if (!*format || !plain_string(format) || !plain_string(flags) || !plain_string(argv[1])) {
		fprintf(stderr, "bench_longctx: NAME, FORMAT and LONG_COMPILE_FLAGS must be plain text\n");
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

	/* the attention tasks of both models, by their symbols */
	BenchSym *syms;
	int nsym = bench_syms_read("llama_step", (const void *)llama_step, keep_attention, NULL, &syms);
	if (nsym < 0)
		return 1;
	uintptr_t attn[MAXTASKS];
	int nattn = 0, per_model[2] = { 0, 0 };
	for (int i = 0; i < nsym && nattn < MAXTASKS; i++) {
		attn[nattn++] = syms[i].addr;
		per_model[attention_of(syms[i].name, "llamas")]++;
		fprintf(stderr, "bench_longctx: attention task %s\n", syms[i].name);
	}
	bench_syms_free(syms, nsym);
	if (per_model[0] == 0 || per_model[1] == 0 || nsym > MAXTASKS) {
		fprintf(stderr, "bench_longctx: attention tasks found: %d of llama, %d of llamas (each needs one, "
		                "at most %d in all)\n", per_model[0], per_model[1], MAXTASKS);
		return 1;
	}

	llama_ctx *dense = llama_create();
	llamas_ctx *sparse = llamas_create();
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits), *ref = malloc(LLAMA_VOCAB * sizeof *ref);
	int32_t *toks = malloc(LLAMA_CTX * sizeof *toks);
	flush_buf = bench_sum_array(FLUSH_FLOATS);
	/* pools[t]: the bench's pool of t threads (shared by the two models, which never
	 * run at the same time); the fills use 2 threads */
	elide_pool *pools[3] = { NULL, elide_pool_create(1), elide_pool_create(2) };
	if (!dense || !sparse || !logits || !ref || !toks || !flush_buf || !pools[1] || !pools[2]) {
		fprintf(stderr, "bench_longctx: out of memory\n");
		return 1;
	}
	check(llama_load_weights(dense, argv[4]), "dense", "load_weights");
	check(llamas_load_weights(sparse, argv[5]), "quest", "load_weights");
	Model md = { "dense", dense, d_step, d_prefill, d_pfor, { 0 } };
	Model ms = { "quest", sparse, s_step, s_prefill, s_pfor, { 0 } };
	Model *mods[2] = { &md, &ms };
	for (int m = 0; m < 2; m++) {
		mods[m]->hook.attn = attn;
		mods[m]->hook.nattn = nattn;
	}
	uint64_t rng = 29;
	for (int i = 0; i < LLAMA_CTX; i++)
		toks[i] = (int32_t)(elide_rng_next(&rng) % LLAMA_VOCAB);

	/* KV bytes read per token at a position: dense every key and value; Quest the
	 * page bounds (min and max per channel as bf16: one row's bytes per page) and the
	 * chosen pages (max(3, B / P) and the current one) */
	const double row = (double)LLAMA_KV_HEADS * (LLAMA_DIM / LLAMA_HEADS) * 4 * LLAMA_LAYERS;
	int kp = budget / page > 3 ? budget / page : 3;

	BenchJson j = bj_begin(argv[8]);
	bj_str(&j, "name", argv[1]);
	bj_num(&j, "dim", LLAMA_DIM);
	bj_num(&j, "layers", LLAMA_LAYERS);
	bj_num(&j, "heads", LLAMA_HEADS);
	bj_num(&j, "kv_heads", LLAMA_KV_HEADS);
	bj_num(&j, "ctx", LLAMA_CTX);
	bj_str(&j, "weight_format", format);
	bj_str(&j, "compile_flags", flags);
	bj_num(&j, "weight_bytes_per_token", wbytes);
	bj_num(&j, "budget", budget);
	bj_num(&j, "page", page);
	bj_num(&j, "steps_per_figure", NSTEP);
	bj_num(&j, "runs", runs);
	bj_str(&j, "attention_timing", "direct: the attention tasks' parallel-for calls");
	bj_num(&j, "attention_tasks_dense", per_model[0]);
	bj_num(&j, "attention_tasks_quest", per_model[1]);
	double cost_fwd, cost_timed;
	hook_cost(pools[1], &md.hook, &cost_fwd, &cost_timed);
	bj_num(&j, "hook_ns_per_call", cost_fwd);
	bj_num(&j, "hook_ns_per_attention_call", cost_timed);
	fprintf(stderr, "bench_longctx: the hook costs %.1f ns per call it forwards, %.1f ns per call it times\n",
	        cost_fwd, cost_timed);
	bj_str(&j, "clock", cpu_clock ? "thread cpu time" : "wall");
	bj_open(&j, "positions", '[');
	int filled = 0;
	double fill_s[2] = { 0, 0 };
	for (int i = 0; i < npos; i++) {
		int P = pos[i];
		for (int m = 0; m < 2; m++) {
			double t0 = bench_seconds();
			use_hook(mods[m], pools[2]);
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
		bj_num(&j, "step_bytes_ratio", (wbytes + kv_dense) / (wbytes + kv_quest));
		bj_num(&j, "logits_rel_diff", den > 0 ? sqrt(num / den) : 0);
		bj_num(&j, "fill_seconds_dense", fill_s[0]);
		bj_num(&j, "fill_seconds_quest", fill_s[1]);
		bj_num(&j, "caches_equal", same_cache);
		bj_num(&j, "argmax_equal", elide_sample_argmax(ref, LLAMA_VOCAB) == elide_sample_argmax(logits, LLAMA_VOCAB));
		bj_open(&j, "threads", '{');
		for (int th = 1; th <= maxth; th++) {
			static Rounds o;
			for (int m = 0; m < 2; m++) { /* warm-up, both ways */
				double a;
				use_hook(mods[m], pools[th]);
				step_at(mods[m], toks[P], P, logits, &a);
				use_plain(mods[m], pools[th], th);
				step_at(mods[m], toks[P], P, logits, NULL);
			}
			for (int r = 0; r < runs; r++)
				round_at(mods, pools[th], th, toks[P], P, logits, r, &o);
			int calls[2]; /* parallel-for calls of the last hooked step of each model */
			for (int m = 0; m < 2; m++) {
				double a;
				use_hook(mods[m], pools[th]);
				step_at(mods[m], toks[P], P, logits, &a);
				calls[m] = mods[m]->hook.calls;
			}
			double s = median_ratio(o.step[0], o.step[1], runs), a = median_ratio(o.attn[0], o.attn[1], runs);
			double so = median_ratio(o.other[0], o.other[1], runs), sp = median_ratio(o.plain[0], o.plain[1], runs);
			double hd = median_of(o.step[0], runs), hs = median_of(o.step[1], runs);
			double ad = median_of(o.attn[0], runs), as = median_of(o.attn[1], runs);
			double od = median_of(o.other[0], runs), os = median_of(o.other[1], runs);
			double pd = median_of(o.plain[0], runs), ps = median_of(o.plain[1], runs);
			double ovd = median_ratio(o.step[0], o.plain[0], runs) - 1, ovs = median_ratio(o.step[1], o.plain[1], runs) - 1;
			char key[4];
			snprintf(key, sizeof key, "%d", th);
			bj_open(&j, key, '{');
			bj_num(&j, "dense_step_ms", hd * 1e3);
			bj_num(&j, "quest_step_ms", hs * 1e3);
			bj_num(&j, "dense_attention_ms", ad * 1e3);
			bj_num(&j, "quest_attention_ms", as * 1e3);
			bj_num(&j, "dense_other_ms", od * 1e3);
			bj_num(&j, "quest_other_ms", os * 1e3);
			bj_num(&j, "dense_tokens_per_s", 1 / hd);
			bj_num(&j, "quest_tokens_per_s", 1 / hs);
			bj_num(&j, "paired_step_speedup", s);
			bj_num(&j, "paired_attention_speedup", a);
			/* the spread of the per-round ratios: first and third quartiles */
			bj_num(&j, "paired_step_speedup_q1", ratio_quantile(o.step[0], o.step[1], runs, 0.25));
			bj_num(&j, "paired_step_speedup_q3", ratio_quantile(o.step[0], o.step[1], runs, 0.75));
			bj_num(&j, "paired_attention_speedup_q1", ratio_quantile(o.attn[0], o.attn[1], runs, 0.25));
			bj_num(&j, "paired_attention_speedup_q3", ratio_quantile(o.attn[0], o.attn[1], runs, 0.75));
			bj_num(&j, "paired_other_ratio", so);
			bj_num(&j, "dense_attention_gbps", ad > 0 ? kv_dense / ad * 1e-9 : 0);
			bj_num(&j, "quest_attention_gbps", as > 0 ? kv_quest / as * 1e-9 : 0);
			bj_num(&j, "dense_plain_step_ms", pd * 1e3);
			bj_num(&j, "quest_plain_step_ms", ps * 1e3);
			bj_num(&j, "paired_plain_step_speedup", sp);
			bj_num(&j, "dense_hook_overhead", ovd);
			bj_num(&j, "quest_hook_overhead", ovs);
			/* the hook's cost per step from its cost per call: the calls it forwards and
			 * the LLAMA_LAYERS it times, over the step */
			bj_num(&j, "dense_parallel_for_calls", calls[0]);
			bj_num(&j, "quest_parallel_for_calls", calls[1]);
			bj_num(&j, "dense_hook_cost_estimate",
			       ((calls[0] - LLAMA_LAYERS) * cost_fwd + LLAMA_LAYERS * cost_timed) * 1e-9 / hd);
			bj_num(&j, "quest_hook_cost_estimate",
			       ((calls[1] - LLAMA_LAYERS) * cost_fwd + LLAMA_LAYERS * cost_timed) * 1e-9 / hs);
			bj_close(&j, '}');
			printf("%-5s %-4s pos %5d %d thread%s  step %6.1f -> %6.1f ms (%5.1f -> %5.1f tok/s) %5.2fx  "
			       "attention %6.2f -> %5.2f ms %5.2fx (KV bytes %.2fx)  rest %5.1f -> %5.1f ms  "
			       "plain step %5.2fx  hook %+.1f%% %+.1f%% (its cost %.3f%% %.3f%%)\n",
			       argv[1], format, P, th, th > 1 ? "s" : " ", hd * 1e3, hs * 1e3, 1 / hd, 1 / hs, s, ad * 1e3,
			       as * 1e3, a, kv_dense / kv_quest, od * 1e3, os * 1e3, sp, ovd * 100, ovs * 100,
			       ((calls[0] - LLAMA_LAYERS) * cost_fwd + LLAMA_LAYERS * cost_timed) * 1e-7 / hd,
			       ((calls[1] - LLAMA_LAYERS) * cost_fwd + LLAMA_LAYERS * cost_timed) * 1e-7 / hs);
			fflush(stdout);
		}
		bj_close(&j, '}');
		bj_close(&j, '}');
	}
	bj_close(&j, ']');
	bj_end(&j);
	llama_destroy(dense);
	llamas_destroy(sparse);
	elide_pool_destroy(pools[1]);
	elide_pool_destroy(pools[2]);
	free(logits);
	free(ref);
	free(toks);
	free(flush_buf);
	return 0;
}
