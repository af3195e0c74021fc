/* test_sparse_attention.c - Quest decode attention (attention_quest, docs/sparse.md)
 * on seeded random Llamas, multi-head and grouped-query:
 *   - a budget of the whole context gives the dense logits bit for bit, compiled
 *     and interpreted (a prefill, then 200 decode steps);
 *   - small budgets: compiled == interpreter (relative error <= 1e-4, same argmax)
 *     at 1 and 2 threads, and the interpreter visits fewer pages than dense;
 *   - the page bounds, after a prefill and after steps that cross page boundaries,
 *     are the per-channel min and max of the cached keys of each page rounded
 *     outward to bf16, in the interpreter and in the compiled state, and keys of
 *     every special kind (NaN, infinities, huge, subnormal, signed zeros) give the
 *     same finite bounds compiled as interpreted;
 *   - the page score bounds q.k from above for every key of its page. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

typedef int (*StepFn)(void *, int32_t, int32_t, float *);
typedef int (*PrefillFn)(void *, const int32_t *, int32_t, int32_t, float *);
typedef int (*ThreadsFn)(void *, int);
typedef int (*SetKnobFn)(void *, int, double);

enum { NPRE = 13, NSTEP = 200, PAGE = 8 };

static Diag diag;
static char dir[256];
static double budget_knob = -1; /* >= 0: the runs set the knob attend.budget to it */

static RmConfig
config(int kv_heads)
{
	RmConfig c = rm_default_config();
	c.dim = 32;
	c.ffn = 64;
	c.vocab = 64;
	c.ctx = 256;
	c.heads = 4;
	c.kv_heads = kv_heads;
	c.layers = 2;
	c.seed = 91 + (uint64_t)kv_heads;
	return c;
}

/* The model with `policy p { body }` (body NULL: dense), loaded, passes run. */
static Module *
load(const RmConfig *c, const char *body)
{
	char w[300], src[300];
	snprintf(dir, sizeof dir, "/tmp/elide_sparse_XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(w, sizeof w, "%s/w.safetensors", dir);
	snprintf(src, sizeof src, "%s/m.elide", dir);
	cr_assert(rm_write_model(c, w));
	char *model = rm_elide_source(c, "llama");
	FILE *f = fopen(src, "w");
	fprintf(f, "%s\npolicy p for llama {\n  %s\n}\n", model, body ? body : "");
	fclose(f);
	free(model);
	diag_init(&diag, stderr);
	Module *m = fe_load(src, body ? "p" : NULL, &diag);
	cr_assert(m);
	cr_assert(ir_load_params(m, w, &diag));
	cr_assert(pass_run_default(m, &diag));
	cr_assert(ir_verify(m, &diag));
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
	return m;
}

/* Logits of a prefill and NSTEP steps (greedy), (1 + NSTEP) x vocab. */
static float *
run_compiled(Module *m, int threads)
{
	int V = (int)ir_config_get(m, "vocab", 64);
	TJit *t = tj_new(m, true);
	cr_assert_eq(((ThreadsFn)tj_sym(t, "set_threads"))(t->ctx, threads), ELIDE_OK);
	if (budget_knob >= 0)
		cr_assert_eq(((SetKnobFn)tj_sym(t, "set_knob"))(t->ctx, ir_find_knob(m, "attend.budget"), budget_knob),
		             ELIDE_OK);
	float *o = xmalloc((size_t)(NSTEP + 1) * (size_t)V * sizeof *o);
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 37 + 11) % V);
	cr_assert_eq(((PrefillFn)tj_sym(t, "prefill"))(t->ctx, toks, NPRE, 0, o), ELIDE_OK);
	for (int s = 0; s < NSTEP; s++) {
		int32_t tok = (int32_t)((ts_argmax(o + (size_t)s * V, V) * 7 + s) % V);
		cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, tok, NPRE + s, o + (size_t)(s + 1) * V), ELIDE_OK);
	}
	tj_free(t);
	return o;
}

static float *
run_interp(Module *m, int64_t *pages)
{
	int V = (int)ir_config_get(m, "vocab", 64);
	InterpState *is = interp_new(m);
	if (budget_knob >= 0)
		cr_assert(interp_set_knob(is, "attend.budget", budget_knob));
	float *o = xmalloc((size_t)(NSTEP + 1) * (size_t)V * sizeof *o);
	char err[256];
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 37 + 11) % V);
	cr_assert(interp_run(is, "prefill", toks, NPRE, 0, o, err, sizeof err), "%s", err);
	for (int s = 0; s < NSTEP; s++) {
		int32_t tok = (int32_t)((ts_argmax(o + (size_t)s * V, V) * 7 + s) % V);
		cr_assert(interp_run(is, "step", &tok, 1, NPRE + s, o + (size_t)(s + 1) * V, err, sizeof err), "%s", err);
	}
	if (pages)
		*pages = interp_pages_visited(is);
	interp_free(is);
	return o;
}

static void
full_budget(int kv_heads)
{
	RmConfig c = config(kv_heads);
	Module *dense = load(&c, NULL);
	Module *q = load(&c, "attend decode quest(page 8, budget 256) sinks 4 window 8;");
	cr_assert_eq(tj_count_ops(q, OP_ATTENTION_QUEST), 2);
	size_t n = (size_t)(NSTEP + 1) * (size_t)c.vocab * sizeof(float);
	float *a = run_compiled(dense, 1), *b = run_compiled(q, 1);
	cr_assert(memcmp(a, b, n) == 0, "compiled: quest with the whole context as budget differs from dense");
	free(a);
	free(b);
	a = run_interp(dense, NULL);
	b = run_interp(q, NULL);
	cr_assert(memcmp(a, b, n) == 0, "interpreted: quest with the whole context as budget differs from dense");
	free(a);
	free(b);
	ir_free_module(dense);
	ir_free_module(q);
}

Test(sparse_attention, full_budget_is_dense_mha) { full_budget(4); }
Test(sparse_attention, full_budget_is_dense_gqa) { full_budget(2); }

static void
small_budget(int kv_heads, const char *body)
{
	RmConfig c = config(kv_heads);
	Module *q = load(&c, body);
	int64_t pages = 0;
	float *ref = run_interp(q, &pages);
	/* dense would visit every page: sum over steps of ceil(n / P) per kv head and layer */
	int64_t all = 0;
	for (int s = 0; s < NSTEP; s++)
		all += (NPRE + s + 1 + PAGE - 1) / PAGE;
	all *= (int64_t)kv_heads * c.layers;
	cr_assert_lt(pages, all / 2, "visited %lld of %lld pages", (long long)pages, (long long)all);
	for (int threads = 1; threads <= 2; threads++) {
		float *o = run_compiled(q, threads);
		for (int s = 0; s <= NSTEP; s++) {
			double e = ts_rel_err(o + (size_t)s * c.vocab, ref + (size_t)s * c.vocab, c.vocab);
			cr_assert(e <= 1e-4, "%d threads, step %d: relative error %g", threads, s, e);
			cr_assert_eq(ts_argmax(o + (size_t)s * c.vocab, c.vocab), ts_argmax(ref + (size_t)s * c.vocab, c.vocab),
			             "%d threads, step %d: argmax", threads, s);
		}
		free(o);
	}
	free(ref);
	ir_free_module(q);
}

Test(sparse_attention, small_budget_mha) { small_budget(4, "attend decode quest(page 8, budget 32) sinks 4 window 16;"); }
Test(sparse_attention, small_budget_gqa) { small_budget(2, "attend decode quest(page 8, budget 24) sinks 8;"); }
Test(sparse_attention, sinks_and_window_only) { small_budget(2, "attend decode sinks 4 window 24;"); }

/* Checks the page bounds b ([KH][np][2][hd] bf16) of the keys K written at positions
 * [0, npos), key j of head g at K + j * kstride + g * hstride (the interpreter's
 * [pos][KH][hd], the compiled cache's head-major [KH][ctx][hd]): each min is the page's minimum rounded toward -inf
 * (ir_bf16_floor), each max its maximum rounded toward +inf, so every key lies within
 * them; and the page score from them, for random queries, is at least q.k for every
 * key of the page. */
static void
check_bounds(const uint16_t *b, const float *K, int64_t kstride, int64_t hstride, int64_t KH, int64_t np, int64_t hd,
             int64_t npos, RmRng *rng, const char *who)
{
	for (int64_t pg = 0; pg * PAGE < npos; pg++)
		for (int64_t g = 0; g < KH; g++) {
			const uint16_t *mn = b + (g * np + pg) * 2 * hd, *mx = mn + hd;
			for (int64_t e = 0; e < hd; e++) {
				float lo = INFINITY, hi = -INFINITY;
				for (int64_t j = pg * PAGE; j < (pg + 1) * PAGE && j < npos; j++) {
					float x = K[j * kstride + g * hstride + e];
					lo = x < lo ? x : lo;
					hi = x > hi ? x : hi;
					cr_assert(ir_bf16_to_f32(mn[e]) <= x && x <= ir_bf16_to_f32(mx[e]),
					          "%s: key %g of page %lld outside its bounds", who, x, (long long)pg);
				}
				cr_assert_eq(mn[e], ir_bf16_floor(lo), "%s: min of page %lld, channel %lld: 0x%04x, not 0x%04x", who,
				             (long long)pg, (long long)e, mn[e], ir_bf16_floor(lo));
				cr_assert_eq(mx[e], ir_bf16_ceil(hi), "%s: max of page %lld, channel %lld: 0x%04x, not 0x%04x", who,
				             (long long)pg, (long long)e, mx[e], ir_bf16_ceil(hi));
			}
			for (int trial = 0; trial < 8; trial++) {
				double q[64], u = 0;
				for (int64_t e = 0; e < hd; e++) {
					q[e] = rm_rng_uniform(rng, -2, 2);
					double x = q[e] * ir_bf16_to_f32(mn[e]), y = q[e] * ir_bf16_to_f32(mx[e]);
					u += x > y ? x : y;
				}
				for (int64_t j = pg * PAGE; j < (pg + 1) * PAGE && j < npos; j++) {
					double dot = 0;
					for (int64_t e = 0; e < hd; e++)
						dot += q[e] * K[j * kstride + g * hstride + e];
					cr_assert(dot <= u + 1e-9, "%s: q.k %g above the page score %g", who, dot, u);
				}
			}
		}
}

/* Page bounds = the outward-rounded min / max of the cached keys per page, after a
 * prefill and after steps that cross page boundaries, interpreted and compiled; the
 * page score is an upper bound of q.k within the page. */
Test(sparse_attention, page_bounds_and_upper_bound)
{
	RmConfig c = config(2);
	Module *m = load(&c, "attend decode quest(page 8, budget 16);");
	InterpState *is = interp_new(m);
	TJit *t = tj_new(m, true);
	float out[64];
	char err[256];
	int32_t toks[NPRE];
	for (int i = 0; i < NPRE; i++)
		toks[i] = (int32_t)((i * 5 + 3) % c.vocab);
	RmRng rng = { 7 };
	for (int phase = 0; phase < 2; phase++) {
		if (phase == 0) {
			cr_assert(interp_run(is, "prefill", toks, NPRE, 0, out, err, sizeof err), "%s", err);
			cr_assert_eq(((PrefillFn)tj_sym(t, "prefill"))(t->ctx, toks, NPRE, 0, out), ELIDE_OK);
		} else {
			for (int p = NPRE; p < NPRE + 20; p++) { /* crosses the pages at 16, 24 and 32 */
				int32_t tok = (int32_t)(p % c.vocab);
				cr_assert(interp_run(is, "step", &tok, 1, p, out, err, sizeof err), "%s", err);
				cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, tok, p, out), ELIDE_OK);
			}
		}
		int64_t npos = phase == 0 ? NPRE : NPRE + 20;
		for (uint32_t si = 0; si < m->nstates; si++) {
			const State *st = &m->states[si];
			const uint16_t *b = interp_page_bounds(is, si);
			const float *K = interp_cache_keys(is, si);
			cr_assert(b && K && st->page == PAGE);
			int64_t KH = st->kv_heads, hd = st->head_dim;
			check_bounds(b, K, KH * hd, hd, KH, interp_npages(st), hd, npos, &rng, "interpreter");
			/* the compiled state: its own keys (which may differ from the interpreter's
			 * in the last bits) and the bounds its cache writes kept */
			elide_kv_layout kl = elide_kv_layout_of(st->ctx, st->kv_heads, st->head_dim, st->page);
			const char *cs = (const char *)t->ctx + t->r->arena_off + t->r->arena_size + t->r->state_off[si];
			check_bounds((const uint16_t *)(cs + kl.bounds_offset), (const float *)cs, hd, st->ctx * hd, KH,
			             interp_npages(st), hd, npos, &rng, "compiled");
		}
	}
	tj_free(t);
	interp_free(is);
	ir_free_module(m);
}

/* The run-time budget: a model compiled with budget 64 and the knob attend.budget set
 * to 24 gives the logits of the model compiled with budget 24, bit for bit, in the
 * interpreter and compiled; a knob above the compiled budget is refused. */
Test(sparse_attention, budget_knob_lowers_the_budget)
{
	RmConfig c = config(2);
	Module *hi = load(&c, "attend decode quest(page 8, budget 64) sinks 4 window 16;");
	Module *lo = load(&c, "attend decode quest(page 8, budget 24) sinks 4 window 16;");
	cr_assert_geq(ir_find_knob(hi, "attend.budget"), 0);
	size_t n = (size_t)(NSTEP + 1) * (size_t)c.vocab * sizeof(float);
	int64_t plo = 0, phi = 0, pfull = 0;
	float *want = run_interp(lo, &plo);
	float *full = run_interp(hi, &pfull);
	budget_knob = 24;
	float *got = run_interp(hi, &phi);
	cr_assert(memcmp(want, got, n) == 0, "interpreted: the knob at 24 differs from budget 24");
	cr_assert_eq(phi, plo);
	cr_assert_lt(phi, pfull, "the lower budget visits fewer pages (%lld, %lld)", (long long)phi, (long long)pfull);
	cr_assert(memcmp(want, full, n) != 0, "budget 64 and 24 give the same logits: the test sees nothing");
	free(got);
	got = run_compiled(hi, 2);
	budget_knob = -1;
	float *cwant = run_compiled(lo, 2);
	cr_assert(memcmp(cwant, got, n) == 0, "compiled: the knob at 24 differs from budget 24");
	free(cwant);
	TJit *t = tj_new(hi, true);
	SetKnobFn set = (SetKnobFn)tj_sym(t, "set_knob");
	cr_assert_eq(set(t->ctx, ir_find_knob(hi, "attend.budget"), 65), ELIDE_ERR_ARG);
	cr_assert_eq(set(t->ctx, ir_find_knob(hi, "attend.budget"), -1), ELIDE_ERR_ARG);
	tj_free(t);
	free(got);
	free(full);
	free(want);
	ir_free_module(hi);
	ir_free_module(lo);
}

/* A cache write of keys that are special values: the embedding rows are written as
 * keys (kv_write) into a cache with pages of 4, two KV heads of 4 channels.  */
static const char *const special_src =
	"module @bw {\n"
	"  layers = 1;\n"
	"  param @emb : f32[16, 8] = \"emb\";\n"
	"  state @kv.0 : kvcache(ctx = 16, kv_heads = 2, head_dim = 4, page = 4) layer 0;\n"
	"}\n"
	"entry step @step(@token: i32, @pos: i32) -> f32[8] {\n"
	"  %tok = arg 0 : i32\n"
	"  %pos = arg 1 : i32\n"
	"  %e = param @emb : f32[16, 8]\n"
	"  %x = embed %e, %tok : f32[8]\n"
	"  layer 0 {\n"
	"    kv_write %x, %x, %pos {kv_heads = 2, state = @kv.0}\n"
	"  }\n"
	"  ret %x\n"
	"}\n";

/* The generated bounds update rounds as ir_bf16_floor / ir_bf16_ceil do for every
 * kind of key: NaN (both signs), infinities, f32's largest values (beyond bf16's,
 * saturated), huge, subnormal, signed zeros, values between two bf16 and exact
 * ones, mixed within pages and across the page boundaries: the compiled bounds equal
 * the interpreter's bit for bit, equal the outward-rounded extremes, and are finite. */
Test(sparse_attention, bounds_of_special_keys_compiled_as_interpreted)
{
	if (!diag.out)
		diag_init(&diag, stderr);
	SourceFile *src = calloc(1, sizeof *src); /* lives as long as the module's Locs */
	src->path = "special.eir";
	src->text = special_src;
	src->len = strlen(special_src);
	diag_add_source(&diag, src);
	Module *m = ir_parse_module(src, &diag);
	cr_assert(m && ir_verify(m, &diag));
	char path[256];
	snprintf(path, sizeof path, "%s/sparse_special_%d.safetensors", ELIDE_BINARY_DIR, (int)getpid());
	cr_assert(rm_write_params(m, 5, path));
	cr_assert(ir_load_params(m, path, &diag));
	remove(path);
	const float vals[] = { NAN, -NAN, INFINITY, -INFINITY, 3.4028235e38f, -3.4028235e38f, 3.0e38f, -3.0e38f,
		               0x1p-149f, -0x1p-149f, 0x1p-133f, 0.0f, -0.0f, 1.00390625f, -1.00390625f, 1.0f,
		               -2.5f, 0.1f, -0.1f, 7.0e-39f };
	const int nvals = (int)(sizeof vals / sizeof *vals);
	float *emb = m->params[0].data;
	for (int i = 0; i < 16 * 8; i++) /* each channel of a page sees several kinds */
		emb[i] = vals[(i * 7 + i / 8) % nvals];
	InterpState *is = interp_new(m);
	TJit *t = tj_new(m, true);
	float out[8];
	char err[256];
	for (int p = 0; p < 16; p++) {
		int32_t tok = (int32_t)((p * 5) % 16);
		cr_assert(interp_run(is, "step", &tok, 1, p, out, err, sizeof err), "%s", err);
		cr_assert_eq(((StepFn)tj_sym(t, "step"))(t->ctx, tok, p, out), ELIDE_OK);
		const State *st = &m->states[0];
		elide_kv_layout kl = elide_kv_layout_of(st->ctx, st->kv_heads, st->head_dim, st->page);
		const char *cs = (const char *)t->ctx + t->r->arena_off + t->r->arena_size + t->r->state_off[0];
		const uint16_t *cb = (const uint16_t *)(cs + kl.bounds_offset), *ib = interp_page_bounds(is, 0);
		for (int64_t g = 0; g < 2; g++)
			for (int64_t pg = 0; pg <= p / 4; pg++)
				for (int64_t e = 0; e < 4; e++) {
					uint16_t lo = 0, hi = 0;
					for (int j = (int)pg * 4; j <= p && j < (pg + 1) * 4; j++) {
						float x = emb[((j * 5) % 16) * 8 + g * 4 + e];
						uint16_t f = ir_bf16_floor(x), c = ir_bf16_ceil(x);
						lo = j == pg * 4 || ir_bf16_to_f32(f) < ir_bf16_to_f32(lo) ? f : lo;
						hi = j == pg * 4 || ir_bf16_to_f32(c) > ir_bf16_to_f32(hi) ? c : hi;
					}
					int64_t at = (g * 4 + pg) * 8 + e;
					cr_assert(cb[at] == ib[at] && cb[at + 4] == ib[at + 4],
					          "pos %d head %lld page %lld ch %lld: compiled 0x%04x 0x%04x, interpreted 0x%04x 0x%04x",
					          p, (long long)g, (long long)pg, (long long)e, cb[at], cb[at + 4], ib[at], ib[at + 4]);
					cr_assert(ib[at] == lo && ib[at + 4] == hi, "pos %d: bounds 0x%04x 0x%04x, not 0x%04x 0x%04x", p,
					          ib[at], ib[at + 4], lo, hi);
					cr_assert((lo & 0x7f80) != 0x7f80 && (hi & 0x7f80) != 0x7f80);
				}
	}
	tj_free(t);
	interp_free(is);
	ir_free_module(m);
}
