/* test_cg_cflow.c - control flow compiled and run in process against the interpreter
 * (the reference semantics of every path), 1 and 2 threads:
 *   - an exit site after layer 0 of a 2-layer decoder with real attention: the
 *     margin against a run-time knob decides; the exit branch writes layer 1's K/V
 *     from the exit state (kv_write), counts the exit and returns; later steps attend
 *     over those cache rows.  The knob is set per step so that tokens exit at some
 *     positions and not at others; the interpreter's caches are NaN-poisoned;
 *   - nested regions with phis, select, and/or/not, every measure, cosine and decay,
 *     with the knobs set so that every branch is taken and not taken;
 *   - each measure returned by an entry over 1..8 rows (the least confident row);
 *   - the generated knob and stat API: defaults, ranges, names, reset;
 *   - the arena plan on every path: a replay of each path (the ops it runs and the
 *     phi copies at the ends of its branches) over a shadow of the arena finds every
 *     value intact where it is read.
 * Logits within relative error 1e-4, the same statistics (calls, tokens, layers
 * run, every stat slot) after every call. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/e2e/cg_jit_support.h"
#include "tests/support/compare.h"
#include "tests/support/randmodel.h"

/* A 2-layer decoder (2 heads of 8, one kv head) with an exit site after layer 0. */
static const char *const exit_src =
	"module @cf {\n"
	"  layers = 2;\n"
	"  param @emb : f32[32, 16] = \"emb\";\n"
	"  param @wq.0 : f32[16, 16] layer 0 = \"wq.0\";\n"
	"  param @wk.0 : f32[8, 16] layer 0 = \"wk.0\";\n"
	"  param @wv.0 : f32[8, 16] layer 0 = \"wv.0\";\n"
	"  param @wo.0 : f32[16, 16] layer 0 = \"wo.0\";\n"
	"  param @wq.1 : f32[16, 16] layer 1 = \"wq.1\";\n"
	"  param @wk.1 : f32[8, 16] layer 1 = \"wk.1\";\n"
	"  param @wv.1 : f32[8, 16] layer 1 = \"wv.1\";\n"
	"  param @wo.1 : f32[16, 16] layer 1 = \"wo.1\";\n"
	"  param @head : f32[32, 16] = \"head\";\n"
	"  state @kv.0 : kvcache(ctx = 16, kv_heads = 1, head_dim = 8) layer 0;\n"
	"  state @kv.1 : kvcache(ctx = 16, kv_heads = 1, head_dim = 8) layer 1;\n"
	"  knob @exit.threshold : f32 = 0.5 {min = 0.0, max = 1.0};\n"
	"  stat @exit.site1;\n"
	"  stat @kv_only_layers;\n"
	"}\n"
	"entry step @step(@token: i32, @pos: i32) -> f32[32] {\n"
	"  %tok = arg 0 : i32\n"
	"  %pos = arg 1 : i32\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %tok : f32[16]\n"
	"  layer 0 {\n"
	"    %wq0 = param @wq.0 : f32[16, 16]\n"
	"    %wk0 = param @wk.0 : f32[8, 16]\n"
	"    %wv0 = param @wv.0 : f32[8, 16]\n"
	"    %wo0 = param @wo.0 : f32[16, 16]\n"
	"    %q0 = linear %x, %wq0 : f32[16]\n"
	"    %k0 = linear %x, %wk0 : f32[8]\n"
	"    %v0 = linear %x, %wv0 : f32[8]\n"
	"    %a0 = attention %q0, %k0, %v0, %pos {heads = 2, kv_heads = 1, state = @kv.0} : f32[16]\n"
	"    %o0 = linear %a0, %wo0 : f32[16]\n"
	"    %x1 = add %x, %o0 : f32[16]\n"
	"  }\n"
	"  %hw = param @head : f32[32, 16]\n"
	"  %l1 = linear %x1, %hw : f32[32]\n"
	"  %c = margin %l1 : f32\n"
	"  %t = knob @exit.threshold : f32\n"
	"  %go = cmp %c, %t {pred = 0} : bool\n"
	"  if %go {site = 1}\n"
	"    layer 1 {\n"
	"      %wke = param @wk.1 : f32[8, 16]\n"
	"      %wve = param @wv.1 : f32[8, 16]\n"
	"      %ke = linear %x1, %wke : f32[8]\n"
	"      %ve = linear %x1, %wve : f32[8]\n"
	"      kv_write %ke, %ve, %pos {kv_heads = 1, state = @kv.1}\n"
	"    }\n"
	"    stat @exit.site1 {amount = 1}\n"
	"    stat @kv_only_layers {amount = 1}\n"
	"    ret %l1 {layers = 1}\n"
	"  end\n"
	"  layer 1 {\n"
	"    %wq1 = param @wq.1 : f32[16, 16]\n"
	"    %wk1 = param @wk.1 : f32[8, 16]\n"
	"    %wv1 = param @wv.1 : f32[8, 16]\n"
	"    %wo1 = param @wo.1 : f32[16, 16]\n"
	"    %q1 = linear %x1, %wq1 : f32[16]\n"
	"    %k1 = linear %x1, %wk1 : f32[8]\n"
	"    %v1 = linear %x1, %wv1 : f32[8]\n"
	"    %a1 = attention %q1, %k1, %v1, %pos {heads = 2, kv_heads = 1, state = @kv.1} : f32[16]\n"
	"    %o1 = linear %a1, %wo1 : f32[16]\n"
	"    %x2 = add %x1, %o1 : f32[16]\n"
	"  }\n"
	"  %l2 = linear %x2, %hw : f32[32]\n"
	"  ret %l2\n"
	"}\n";

/* Nested regions with phis (f32 vectors and an i32 scalar), select, and/or/not, every
 * measure, cosine and decay; knobs of both dtypes; linears that fuse inside a branch.
 * Entries over 1..8 rows return each measure. */
static const char *const nest_src =
	"module @nest {\n"
	"  layers = 1;\n"
	"  param @emb : f32[32, 16] = \"emb\";\n"
	"  param @w0 : f32[16, 16] = \"w0\";\n"
	"  param @w1 : f32[16, 16] = \"w1\";\n"
	"  param @w2 : f32[16, 16] = \"w2\";\n"
	"  param @w3 : f32[16, 16] = \"w3\";\n"
	"  param @head : f32[32, 16] = \"head\";\n"
	"  knob @a : f32 = 0.0 {min = 0.0, max = 1.0};\n"
	"  knob @b : f32 = 10.0 {min = 0.0, max = 10.0};\n"
	"  knob @c : f32 = -1.0 {min = -1.0, max = 1.0};\n"
	"  knob @lambda : f32 = 0.0 {min = 0.0, max = 2.0};\n"
	"  knob @tau : f32 = 4.0 {min = 0.0, max = 100.0};\n"
	"  knob @pick : i32 = 1 {min = 0, max = 3};\n"
	"  stat @outer.then;\n"
	"  stat @inner.then;\n"
	"  stat @inner.else;\n"
	"}\n"
	"entry step @step(@token: i32, @pos: i32) -> f32[32] {\n"
	"  %tok = arg 0 : i32\n"
	"  %pos = arg 1 : i32\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %tok : f32[16]\n"
	"  %w0 = param @w0 : f32[16, 16]\n"
	"  %h = linear %x, %w0 : f32[16]\n"
	"  %hw = param @head : f32[32, 16]\n"
	"  %l = linear %h, %hw : f32[32]\n"
	"  %m1 = margin %l : f32\n"
	"  %m2 = maxprob %l : f32\n"
	"  %m3 = entropy %l : f32\n"
	"  %cs = cosine %x, %h : f32\n"
	"  %ka = knob @a : f32\n"
	"  %kb = knob @b : f32\n"
	"  %kc = knob @c : f32\n"
	"  %lam = knob @lambda : f32\n"
	"  %tau = knob @tau : f32\n"
	"  %kp = knob @pick : i32\n"
	"  %thr = decay %lam, %tau, %pos {n = 16} : f32\n"
	"  %p1 = cmp %m1, %ka {pred = 0} : bool\n"
	"  %p2 = cmp %m3, %kb {pred = 2} : bool\n"
	"  %p3 = cmp %cs, %kc {pred = 1} : bool\n"
	"  %p4 = cmp %m2, %thr {pred = 0} : bool\n"
	"  %q = and %p1, %p2 : bool\n"
	"  %n = not %p3 : bool\n"
	"  %o = or %q, %n : bool\n"
	"  %one = const 1 : i32\n"
	"  %p5 = cmp %kp, %one {pred = 3} : bool\n"
	"  %w1 = param @w1 : f32[16, 16]\n"
	"  %w2 = param @w2 : f32[16, 16]\n"
	"  %w3 = param @w3 : f32[16, 16]\n"
	"  %gg = linear %x, %w1 : f32[16]\n"
	"  if %o\n"
	"    stat @outer.then {amount = 1}\n"
	"    %g = linear %h, %w1 : f32[16]\n"
	"    %y1 = silu %g : f32[16]\n"
	"    if %p4\n"
	"      stat @inner.then {amount = 2}\n"
	"      %z1 = scale %y1 {factor = 0.5} : f32[16]\n"
	"      %i1 = const 7 : i32\n"
	"    else\n"
	"      stat @inner.else {amount = 1}\n"
	"      %z2a = linear %y1, %w2 : f32[16]\n"
	"      %z2 = add %z2a, %x : f32[16]\n"
	"    end\n"
	"    %zz = phi %z1, %z2 : f32[16]\n"
	"    %ii = phi %i1, %kp : i32\n"
	"    %y = add %zz, %x : f32[16]\n"
	"  else\n"
	"    %y2 = linear %x, %w3 : f32[16]\n"
	"    %y3 = add %gg, %y2 : f32[16]\n"
	"  end\n"
	"  %yy = phi %y, %y3 : f32[16]\n"
	"  %jj = phi %ii, %one : i32\n"
	"  %big = cmp %jj, %kp {pred = 5} : bool\n"
	"  %sel = and %big, %p5 : bool\n"
	"  %s = select %sel, %yy, %h : f32[16]\n"
	"  %s2 = select %p2, %s, %x : f32[16]\n"
	"  %out = linear %s2, %hw : f32[32]\n"
	"  ret %out\n"
	"}\n"
	"entry forward @margin(@tokens: i32[<=8]) -> f32 {\n"
	"  %t = arg 0 : i32[<=8]\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %t : f32[<=8, 16]\n"
	"  %hw = param @head : f32[32, 16]\n"
	"  %l = linear %x, %hw : f32[<=8, 32]\n"
	"  %m = margin %l : f32\n"
	"  ret %m\n"
	"}\n"
	"entry forward @maxprob(@tokens: i32[<=8]) -> f32 {\n"
	"  %t = arg 0 : i32[<=8]\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %t : f32[<=8, 16]\n"
	"  %hw = param @head : f32[32, 16]\n"
	"  %l = linear %x, %hw : f32[<=8, 32]\n"
	"  %m = maxprob %l : f32\n"
	"  ret %m\n"
	"}\n"
	"entry forward @entropy(@tokens: i32[<=8]) -> f32 {\n"
	"  %t = arg 0 : i32[<=8]\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %t : f32[<=8, 16]\n"
	"  %hw = param @head : f32[32, 16]\n"
	"  %l = linear %x, %hw : f32[<=8, 32]\n"
	"  %m = entropy %l : f32\n"
	"  ret %m\n"
	"}\n"
	"entry forward @cosine(@tokens: i32[<=8]) -> f32 {\n"
	"  %t = arg 0 : i32[<=8]\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %x = embed %e, %t : f32[<=8, 16]\n"
	"  %w0 = param @w0 : f32[16, 16]\n"
	"  %h = linear %x, %w0 : f32[<=8, 16]\n"
	"  %m = cosine %x, %h : f32\n"
	"  ret %m\n"
	"}\n"
	"entry step @decay(@token: i32, @pos: i32) -> f32 {\n"
	"  %tok = arg 0 : i32\n"
	"  %pos = arg 1 : i32\n"
	"  %lam = knob @lambda : f32\n"
	"  %tau = knob @tau : f32\n"
	"  %d = decay %lam, %tau, %pos {n = 16} : f32\n"
	"  ret %d\n"
	"}\n";

static Diag diag; /* the parsed sources stay registered here */

static Module *
load(const char *name, const char *text, uint64_t seed)
{
	if (!diag.out)
		diag_init(&diag, stderr);
	SourceFile *src = calloc(1, sizeof *src); /* lives as long as the module's Locs */
	src->path = name;
	src->text = text;
	src->len = strlen(text);
	diag_add_source(&diag, src);
	Module *m = ir_parse_module(src, &diag);
	cr_assert(m, "%s does not parse", name);
	cr_assert(ir_verify(m, &diag), "%s does not verify", name);
	char path[256];
	snprintf(path, sizeof path, "%s/cg_cflow_%d_%s.safetensors", ELIDE_BINARY_DIR, (int)getpid(), m->name);
	cr_assert(rm_write_params(m, seed, path));
	cr_assert(ir_load_params(m, path, &diag));
	remove(path);
	return m;
}

typedef struct Api {   /* the generated functions the tests call */
	int (*set_knob)(void *, int, double);
	double (*get_knob)(const void *, int);
	const char *(*knob_name)(int);
	int64_t (*stat)(const void *, int);
	const char *(*stat_name)(int);
	void (*get_stats)(const void *, uint64_t *);
	int (*reset)(void *);
	int (*threads)(void *, int);
} Api;

static Api
api_of(TJit *t)
{
	Api a;
	a.set_knob = (int (*)(void *, int, double))tj_sym(t, "set_knob");
	a.get_knob = (double (*)(const void *, int))tj_sym(t, "get_knob");
	a.knob_name = (const char *(*)(int))tj_sym(t, "knob_name");
	a.stat = (int64_t(*)(const void *, int))tj_sym(t, "stat");
	a.stat_name = (const char *(*)(int))tj_sym(t, "stat_name");
	a.get_stats = (void (*)(const void *, uint64_t *))tj_sym(t, "get_stats");
	a.reset = (int (*)(void *))tj_sym(t, "reset");
	a.threads = (int (*)(void *, int))tj_sym(t, "set_threads");
	return a;
}

/* The compiled statistics equal the interpreter's. */
static void
same_stats(const Module *m, const Api *a, TJit *t, InterpState *s, const char *what)
{
	uint64_t st[4];
	a->get_stats(t->ctx, st);
	const InterpStats *is = interp_stats(s);
	cr_assert_eq((int64_t)st[0], is->calls, "%s: calls %llu != %lld", what, (unsigned long long)st[0],
	             (long long)is->calls);
	cr_assert_eq((int64_t)st[1], is->tokens, "%s: tokens", what);
	cr_assert_eq((int64_t)st[2], is->layers, "%s: layers run %llu != %lld", what, (unsigned long long)st[2],
	             (long long)is->layers);
	for (uint32_t k = 0; k < m->nstats; k++)
		cr_assert_eq(a->stat(t->ctx, (int)k), is->slots[k], "%s: stat '%s' %lld != %lld", what, m->stats[k].name,
		             (long long)a->stat(t->ctx, (int)k), (long long)is->slots[k]);
}

/* Sets knob `name` on both sides. */
static void
set_both(const Module *m, const Api *a, TJit *t, InterpState *s, const char *name, double v)
{
	int32_t k = ir_find_knob(m, name);
	cr_assert(k >= 0, "no knob '%s'", name);
	cr_assert_eq(a->set_knob(t->ctx, k, v), ELIDE_OK, "set_knob %s = %g", name, v);
	cr_assert(interp_set_knob(s, name, v));
}

static int
step_fn(TJit *t, const char *name, int32_t tok, int32_t pos, float *out)
{
	int (*f)(void *, int32_t, int32_t, float *) = (int (*)(void *, int32_t, int32_t, float *))tj_sym(t, name);
	return f(t->ctx, tok, pos, out);
}

/* Whether step p exits in the pattern of run `r`: every step, none, or a mix. */
static bool
exits_at(int r, int p)
{
	return r == 0 ? true : r == 1 ? false : r == 2 ? p % 3 == 1 : (p * 7 + r) % 5 < 2;
}

Test(cg_cflow, exit_site_kv_write_every_path)
{
	Module *m = load("cf.eir", exit_src, 21);
	for (int fuse = 0; fuse < 2; fuse++) {
		TJit *t = tj_new(m, fuse);
		Api a = api_of(t);
		for (int threads = 1; threads <= 2; threads++) {
			cr_assert_eq(a.threads(t->ctx, threads), ELIDE_OK);
			for (int run = 0; run < 5; run++) {
				cr_assert_eq(a.reset(t->ctx), ELIDE_OK);
				InterpState *s = interp_new(m);
				interp_set_poison(s, true);
				int exits = 0;
				for (int p = 0; p < 16; p++) {
					/* margin > 0 holds for random logits; margin > 1 never does */
					set_both(m, &a, t, s, "exit.threshold", exits_at(run, p) ? 0.0 : 1.0);
					int32_t tok = (p * 11 + run * 5 + 3) % 32;
					float got[32], want[32];
					char err[256];
					cr_assert_eq(step_fn(t, "step", tok, p, got), ELIDE_OK);
					cr_assert(interp_run(s, "step", &tok, 1, p, want, err, sizeof err), "%s", err);
					for (int i = 0; i < 32; i++)
						cr_assert(!isnan(want[i]), "run %d step %d: the interpreter read a NaN", run, p);
					double e = ts_rel_err(got, want, 32);
					cr_assert(e <= 1e-4, "fuse %d threads %d run %d step %d: relative error %g", fuse, threads, run,
					          p, e);
					cr_assert_eq(ts_argmax(got, 32), ts_argmax(want, 32));
					char what[64];
					snprintf(what, sizeof what, "run %d step %d", run, p);
					same_stats(m, &a, t, s, what);
					exits += exits_at(run, p);
				}
				/* the exit path is what ran: one layer and one K/V-only layer per exit */
				cr_assert_eq(interp_stats(s)->slots[0], exits);
				cr_assert_eq(interp_stats(s)->layers, 2 * 16 - exits);
				interp_free(s);
			}
		}
		tj_free(t);
	}
	ir_free_module(m);
}

/* Knob settings that take every branch: a = 0 or 1 (margin > a), b = 10 or 0 (entropy
 * < b), c = -1 or 1 (cosine >= c), lambda = 0 or 2 (maxprob > the decayed lambda),
 * pick = 0..3. */
Test(cg_cflow, nested_regions_phis_select)
{
	Module *m = load("nest.eir", nest_src, 33);
	for (int fuse = 0; fuse < 2; fuse++) {
		TJit *t = tj_new(m, fuse);
		Api a = api_of(t);
		for (int threads = 1; threads <= 2; threads++) {
			cr_assert_eq(a.threads(t->ctx, threads), ELIDE_OK);
			InterpState *s = interp_new(m);
			cr_assert_eq(a.reset(t->ctx), ELIDE_OK);
			bool seen_then = false, seen_else = false, seen_inner[2] = { false, false };
			for (int combo = 0; combo < 64; combo++) {
				set_both(m, &a, t, s, "a", combo & 1 ? 1.0 : 0.0);
				set_both(m, &a, t, s, "b", combo & 2 ? 0.0 : 10.0);
				set_both(m, &a, t, s, "c", combo & 4 ? 1.0 : -1.0);
				set_both(m, &a, t, s, "lambda", combo & 8 ? 2.0 : 0.0);
				set_both(m, &a, t, s, "pick", (double)((combo >> 4) & 3));
				for (int p = 0; p < 3; p++) {
					int32_t tok = (combo * 3 + p * 13) % 32, pos = p * 5;
					float got[32], want[32];
					char err[256];
					const InterpStats *is = interp_stats(s);
					int64_t before[3] = { is->slots[0], is->slots[1], is->slots[2] };
					cr_assert_eq(step_fn(t, "step", tok, pos, got), ELIDE_OK);
					cr_assert(interp_run(s, "step", &tok, 1, pos, want, err, sizeof err), "%s", err);
					double e = ts_rel_err(got, want, 32);
					cr_assert(e <= 1e-4, "fuse %d combo %d step %d: relative error %g", fuse, combo, p, e);
					char what[64];
					snprintf(what, sizeof what, "combo %d step %d", combo, p);
					same_stats(m, &a, t, s, what);
					seen_then |= is->slots[0] > before[0];
					seen_else |= is->slots[0] == before[0];
					seen_inner[0] |= is->slots[1] > before[1];
					seen_inner[1] |= is->slots[2] > before[2];
				}
			}
			cr_assert(seen_then && seen_else && seen_inner[0] && seen_inner[1], "not every branch ran");
			interp_free(s);
		}
		tj_free(t);
	}
	ir_free_module(m);
}

Test(cg_cflow, measures_over_rows)
{
	Module *m = load("nest.eir", nest_src, 5);
	TJit *t = tj_new(m, true);
	Api a = api_of(t);
	InterpState *s = interp_new(m);
	static const char *const names[] = { "margin", "maxprob", "entropy", "cosine" };
	int32_t toks[8] = { 3, 17, 29, 0, 8, 21, 12, 5 };
	for (int k = 0; k < 4; k++) {
		int (*f)(void *, const int32_t *, int32_t, float *) =
			(int (*)(void *, const int32_t *, int32_t, float *))tj_sym(t, names[k]);
		for (int n = 1; n <= 8; n++) {
			float got = NAN, want = NAN;
			char err[256];
			cr_assert_eq(f(t->ctx, toks, n, &got), ELIDE_OK);
			cr_assert(interp_run(s, names[k], toks, n, 0, &want, err, sizeof err), "%s", err);
			cr_assert(fabsf(got - want) <= 1e-4f * fabsf(want) + 1e-7f, "%s over %d rows: %.9g != %.9g", names[k], n,
			          (double)got, (double)want);
		}
	}
	/* CALM's threshold: lambda (0.9 + 0.1 exp(-tau pos / n)) */
	for (int p = 0; p < 16; p += 3) {
		set_both(m, &a, t, s, "lambda", 0.75);
		set_both(m, &a, t, s, "tau", 2.5 + p);
		float got = NAN, want = NAN;
		char err[256];
		int32_t tok = 1;
		cr_assert_eq(step_fn(t, "decay", tok, p, &got), ELIDE_OK);
		cr_assert(interp_run(s, "decay", &tok, 1, p, &want, err, sizeof err), "%s", err);
		double ref = 0.75 * (0.9 + 0.1 * exp(-(2.5 + p) * p / 16.0));
		cr_assert(fabs(got - ref) <= 1e-6 && fabs(want - ref) <= 1e-6, "decay at %d: %g, %g, %g", p, (double)got,
		          (double)want, ref);
	}
	interp_free(s);
	tj_free(t);
	ir_free_module(m);
}

Test(cg_cflow, knob_and_stat_api)
{
	Module *m = load("nest.eir", nest_src, 7);
	TJit *t = tj_new(m, true);
	Api a = api_of(t);
	/* defaults at creation, names in Module order */
	for (uint32_t k = 0; k < m->nknobs; k++) {
		cr_assert_eq(a.get_knob(t->ctx, (int)k), m->knobs[k].dflt, "default of '%s'", m->knobs[k].name);
		cr_assert_str_eq(a.knob_name((int)k), m->knobs[k].name);
	}
	cr_assert_null(a.knob_name((int)m->nknobs));
	cr_assert_null(a.knob_name(-1));
	cr_assert(isnan(a.get_knob(t->ctx, (int)m->nknobs)));
	cr_assert(isnan(a.get_knob(NULL, 0)));
	for (uint32_t k = 0; k < m->nstats; k++)
		cr_assert_str_eq(a.stat_name((int)k), m->stats[k].name);
	cr_assert_null(a.stat_name((int)m->nstats));
	cr_assert_eq(a.stat(t->ctx, -1), -1);
	cr_assert_eq(a.stat(t->ctx, (int)m->nstats), -1);
	cr_assert_eq(a.stat(NULL, 0), -1);
	/* ranges: min and max are accepted, outside, NaN and fractions of an i32 knob are not */
	int ka = ir_find_knob(m, "a"), kp = ir_find_knob(m, "pick");
	cr_assert_eq(a.set_knob(t->ctx, ka, 1.0), ELIDE_OK);
	cr_assert_eq(a.set_knob(t->ctx, ka, 0.0), ELIDE_OK);
	cr_assert_eq(a.set_knob(t->ctx, ka, 0.25), ELIDE_OK);
	cr_assert_eq(a.set_knob(t->ctx, ka, 1.0000001), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(t->ctx, ka, -1e-9), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(t->ctx, ka, NAN), ELIDE_ERR_ARG);
	cr_assert_eq(a.get_knob(t->ctx, ka), 0.25, "a rejected setting changes nothing");
	cr_assert_eq(a.set_knob(t->ctx, kp, 2.5), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(t->ctx, kp, 4.0), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(t->ctx, kp, 3.0), ELIDE_OK);
	cr_assert_eq(a.set_knob(t->ctx, (int)m->nknobs, 0.0), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(t->ctx, -1, 0.0), ELIDE_ERR_ARG);
	cr_assert_eq(a.set_knob(NULL, 0, 0.0), ELIDE_ERR_ARG);
	/* stats count (the defaults of a, b, c take the outer first branch); reset clears
	 * them and the calls, keeps the knobs */
	cr_assert_eq(a.set_knob(t->ctx, ka, 0.0), ELIDE_OK);
	float out[32];
	cr_assert_eq(step_fn(t, "step", 3, 0, out), ELIDE_OK);
	uint64_t st[4];
	a.get_stats(t->ctx, st);
	cr_assert_eq(st[0], 1);
	cr_assert_eq(st[3], 1, "one weight load");
	int64_t total = 0;
	for (uint32_t k = 0; k < m->nstats; k++)
		total += a.stat(t->ctx, (int)k);
	cr_assert_gt(total, 0);
	cr_assert_eq(a.reset(t->ctx), ELIDE_OK);
	a.get_stats(t->ctx, st);
	cr_assert(st[0] == 0 && st[1] == 0 && st[2] == 0 && st[3] == 1);
	for (uint32_t k = 0; k < m->nstats; k++)
		cr_assert_eq(a.stat(t->ctx, (int)k), 0);
	cr_assert_eq(a.get_knob(t->ctx, kp), 3.0);
	cr_assert_eq(a.get_knob(t->ctx, ka), 0.0);
	tj_free(t);
	ir_free_module(m);
}

/* ---- the arena plan on every path ---- */

typedef struct Shadow {
	const Func *f;
	const CgPlan *p;
	int32_t *owner;   /* per 64-byte block of the arena: the value held, -1 none */
	const char *what;
} Shadow;

static int64_t
buf_bytes(Type t)
{
	int64_t n = ir_type_numel(t);
	return ((n > 0 ? n : 1) * (int64_t)ir_dtype_size(t.dtype) + 63) & ~(int64_t)63;
}

static void
sh_write(Shadow *s, ValueId v)
{
	int64_t off = s->p->offset[v];
	cr_assert(off >= 0, "%s: %%%u is written but has no buffer", s->what, v);
	for (int64_t b = off / 64; b < (off + buf_bytes(s->f->vals[v].type)) / 64; b++)
		s->owner[b] = (int32_t)v;
}

static void
sh_read(Shadow *s, ValueId v)
{
	const Op *d = &s->f->ops[s->f->vals[v].def];
	if (ir_op_flags[d->code] & OPF_LEAF)
		return;
	int64_t off = s->p->offset[v];
	cr_assert(off >= 0, "%s: %%%u is read but has no buffer", s->what, v);
	for (int64_t b = off / 64; b < (off + buf_bytes(s->f->vals[v].type)) / 64; b++)
		cr_assert_eq(s->owner[b], (int32_t)v, "%s: %%%u was overwritten by %%%d before this read", s->what, v,
		             s->owner[b]);
}

/* The copies into the buffers of the phis after 'end' op `end`, of operand k. */
static void
sh_copies(Shadow *s, uint32_t end, int k)
{
	for (uint32_t i = end + 1; i < s->f->nops && s->f->ops[i].code == OP_PHI; i++) {
		sh_read(s, s->f->ops[i].args[k]);
		sh_write(s, s->f->ops[i].dst);
	}
}

/* Replays the path that takes the first branch of the n-th 'if' when bit n of mask is set. */
static void
replay_path(Shadow *s, const uint32_t *partner, const uint32_t *ifno, uint32_t mask)
{
	const Func *f = s->f;
	for (uint32_t i = 0; i < f->nops;) {
		const Op *op = &f->ops[i];
		const CgFuse *fu = &s->p->fuse[i];
		if (op->code == OP_IF) {
			uint32_t mid = partner[i];
			if (mask >> ifno[i] & 1) {
				i++;
			} else if (f->ops[mid].code == OP_ELSE) {
				i = mid + 1;
			} else {
				sh_copies(s, mid, 1);
				i = mid + 1;
			}
			continue;
		}
		if (op->code == OP_ELSE) {
			sh_copies(s, partner[i], 0);
			i = partner[i] + 1;
			continue;
		}
		if (op->code == OP_END) {
			bool has_else = partner[partner[i]] != i;
			sh_copies(s, i, has_else ? 1 : 0);
			i++;
			continue;
		}
		if (op->code == OP_RET) {
			sh_read(s, op->args[0]);
			return;
		}
		if (fu->skip || op->code == OP_PHI || (ir_op_flags[op->code] & OPF_LEAF)) {
			i++;
			continue;
		}
		for (uint32_t a = 0; a < op->nargs; a++)
			sh_read(s, op->args[a]);
		if (fu->binary >= 0)
			sh_read(s, fu->other);
		if (!(ir_op_flags[op->code] & OPF_VOID))
			sh_write(s, fu->out);
		i++;
	}
	cr_assert_fail("%s: the path ends without a 'ret'", s->what);
}

static void
replay_func(const Module *m, const Func *f, bool fuse)
{
	CgPlan p;
	cg_plan_func(m, f, fuse, &p);
	uint32_t *partner = calloc(f->nops + 1, sizeof *partner), *ifno = calloc(f->nops + 1, sizeof *ifno);
	cr_assert(ir_match_regions(f, partner, NULL, 0, NULL));
	uint32_t nifs = 0;
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].code == OP_IF)
			ifno[i] = nifs++;
	cr_assert_lt(nifs, 16);
	Shadow s = { .f = f, .p = &p, .owner = malloc((p.size / 64 + 1) * sizeof(int32_t)) };
	for (uint32_t mask = 0; mask < (1u << nifs); mask++) {
		char what[128];
		snprintf(what, sizeof what, "'%s' fuse %d path %#x", f->name, fuse, mask);
		s.what = what;
		for (uint64_t b = 0; b <= p.size / 64; b++)
			s.owner[b] = -1;
		replay_path(&s, partner, ifno, mask);
	}
	free(s.owner);
	free(partner);
	free(ifno);
	cg_plan_free(&p);
}

/* A third module for the plan: several phis after one 'end' that take values from
 * before the region, phis of phis, a region without 'else', and an early 'ret'. */
static const char *const phis_src =
	"module @phis {\n"
	"  layers = 1;\n"
	"  param @w : f32[16, 16] = \"w\";\n"
	"  param @emb : f32[32, 16] = \"emb\";\n"
	"  knob @k : f32 = 0.5 {min = 0.0, max = 1.0};\n"
	"}\n"
	"entry step @step(@token: i32, @pos: i32) -> f32[16] {\n"
	"  %tok = arg 0 : i32\n"
	"  %e = param @emb : f32[32, 16]\n"
	"  %w = param @w : f32[16, 16]\n"
	"  %x = embed %e, %tok : f32[16]\n"
	"  %a = linear %x, %w : f32[16]\n"
	"  %b = silu %a : f32[16]\n"
	"  %c = tanh %a : f32[16]\n"
	"  %k = knob @k : f32\n"
	"  %s = cosine %b, %c : f32\n"
	"  %p = cmp %s, %k {pred = 0} : bool\n"
	"  %np = not %p : bool\n"
	"  if %p\n"
	"    %d = add %b, %c : f32[16]\n"
	"    %d2 = mul %d, %a : f32[16]\n"
	"  else\n"
	"    %f = sub %b, %c : f32[16]\n"
	"  end\n"
	"  %g = phi %c, %b : f32[16]\n"
	"  %h = phi %d2, %f : f32[16]\n"
	"  %i = phi %b, %a : f32[16]\n"
	"  if %np\n"
	"    %j = add %g, %h : f32[16]\n"
	"    if %p\n"
	"      ret %j\n"
	"    end\n"
	"    %l = mul %j, %i : f32[16]\n"
	"  end\n"
	"  %m = phi %l, %g : f32[16]\n"
	"  %n = phi %i, %h : f32[16]\n"
	"  %o = add %m, %n : f32[16]\n"
	"  %q = linear %o, %w : f32[16]\n"
	"  ret %q\n"
	"}\n";

Test(cg_cflow, plan_every_path)
{
	const char *const srcs[3] = { exit_src, nest_src, phis_src };
	const char *const names[3] = { "cf.eir", "nest.eir", "phis.eir" };
	for (int k = 0; k < 3; k++) {
		Module *m = load(names[k], srcs[k], 3);
		for (uint32_t e = 0; e < m->nfuncs; e++)
			for (int fuse = 0; fuse < 2; fuse++)
				replay_func(m, m->funcs[e], fuse);
		ir_free_module(m);
	}
}

/* The phis module compiled == interpreted on its paths (the knob picks them). */
Test(cg_cflow, phis_every_path)
{
	Module *m = load("phis.eir", phis_src, 11);
	TJit *t = tj_new(m, true);
	Api a = api_of(t);
	InterpState *s = interp_new(m);
	for (int kk = 0; kk <= 10; kk++) {
		set_both(m, &a, t, s, "k", kk / 10.0);
		for (int32_t tok = 0; tok < 32; tok += 3) {
			float got[16], want[16];
			char err[256];
			cr_assert_eq(step_fn(t, "step", tok, 0, got), ELIDE_OK);
			cr_assert(interp_run(s, "step", &tok, 1, 0, want, err, sizeof err), "%s", err);
			double e = ts_rel_err(got, want, 16);
			cr_assert(e <= 1e-4, "k %d token %d: relative error %g", kk, tok, e);
			same_stats(m, &a, t, s, "phis");
		}
	}
	interp_free(s);
	tj_free(t);
	ir_free_module(m);
}

/* The manifest's paths of the exit-site module, counted by hand: the exit path reads
 * the embedding row, layer 0, the head and layer 1's K and V projections; the full
 * path layer 1 whole and the head twice. */
Test(cg_cflow, manifest_paths)
{
	Module *m = load("cf.eir", exit_src, 2);
	TJit *t = tj_new(m, true);
	const CgEntry *e = &t->r->entries[0];
	cr_assert_eq(e->npaths, 2);
	const CgPath *x = &e->paths[0], *full = &e->paths[1];
	double emb = 16 * 4, l0 = (16 * 16 + 2 * 8 * 16 + 16 * 16) * 4, head = 32 * 16 * 4, kv = 2 * 8 * 16 * 4;
	cr_assert_eq(x->site, 1);
	cr_assert_eq(x->layers, 1);
	cr_assert_eq(x->bytes, emb + l0 + head + kv, "exit path %g bytes", x->bytes);
	/* linears 2 N K, the residual add 16, the margin 4 x 32, attention at one key: per
	 * head (hd 8) the normalisation 8 and per key 4 hd + 4 */
	double attn_key = 2 * (4 * 8 + 4), attn = attn_key + 2 * 8;
	cr_assert_eq(x->flops, (l0 + head + kv) / 2 + 16 + 128 + attn, "exit path %g flops", x->flops);
	cr_assert_eq(x->flops_per_key, attn_key, "exit path %g flops per key", x->flops_per_key);
	cr_assert_eq(full->site, 0);
	cr_assert_eq(full->layers, 2);
	cr_assert_eq(full->bytes, emb + 2 * l0 + 2 * head);
	cr_assert_eq(full->flops, (2 * l0 + 2 * head) / 2 + 2 * 16 + 128 + 2 * attn);
	cr_assert_eq(full->flops_per_key, 2 * attn_key);
	cr_assert_eq(e->flops_per_key, full->flops_per_key);
	cr_assert_eq(e->bytes, full->bytes);
	cr_assert_eq(e->layers[2].bytes, l0, "layer 1 on the full path");
	char *j = cg_manifest_text(t->r);
	cr_assert(strstr(j, "\"knobs\"") && strstr(j, "\"exit.threshold\"") && strstr(j, "\"kv_only_layers\""), "%s", j);
	cr_assert(strstr(j, "\"paths\"") && strstr(j, "\"site\":\t1"), "%s", j);
	free(j);
	tj_free(t);
	ir_free_module(m);
}
