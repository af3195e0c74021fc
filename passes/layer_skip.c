/* layer_skip.c - the `layer-skip` pass: the policy's `skip` statements become
 * specialised straight-line variants chosen once per token or per sequence, and
 * per-token paths around FFN blocks (docs/ir.md "The layer-skip pass";
 * docs/techniques.md section B).
 *   1. read the statements (read_skip, the one place that reads their options), at
 *      most one per subject; `schedule` and `layers from router` both choose the
 *      step's layer set and exclude each other; check them against the model;
 *   2. `skip schedule linear(n_max, n_min, ctx)` (SkipDecode): the budget n(t) of
 *      every position, computed here (budget()); one variant per distinct budget n:
 *      layer 0, then the top n-1 layers.  In each step entry, after layer 0: for the
 *      variants from the last to the second, `if pos >= first position of the
 *      variant { variant; ret {layers = n} } end`; the first variant (n_max) falls
 *      through.  A variant is the rest of the entry copied on its layer set
 *      (pass_replay_variant): no policy test inside it;
 *   3. `skip layers from router buckets N [calibrate "file"]` (FiRST): the ranked
 *      set R, N-1 candidate layers (not the first or last): least block influence
 *      1 - cos(layer in, layer out) on the calibration text first, or, without
 *      calibration, the deepest first.  Each prefill ends with the test of every
 *      layer of R over the prompt (the model's router score `router[l]` below the
 *      knob skip.router.threshold for every prompt token, or else cos(layer in,
 *      layer out) above it for every prompt token), the bucket b = the longest
 *      prefix of R that passes, and `knob_set @skip.route`; each step entry, before
 *      the first layer of R, takes b = skip.bucket when that knob is >= 0, else
 *      skip.route, and dispatches to N variants skipping R[0..b);
 *   4. `skip ffn when cos(in, out) > T [warmup N] [cold a, ...] [layers a..b]`
 *      (FFN-SkipLLM): in each step entry, the candidate layers are those of the range
 *      that are not cold; the first candidate's FFN block runs and sets the token's
 *      flag (cos(block in, block out) > knob skip.ffn.threshold, and pos >= N); every
 *      later candidate gets `if flag { stat } else { FFN block; flag = test } end`
 *      and phis for the stream and the flag;
 *   5. drop the statements, add manifest notes (each variant's layer set).
 * Prefill runs every layer for schedule and FFN skipping; forward entries are left
 * alone.  Needs: one residual value between layers (and an FFN block per candidate
 * layer for `ffn`); schedule and router need entries without control flow.  At
 * neutral settings (linear(L, L, c), T above 1, one bucket) every entry keeps its
 * ops and their order: the logits are the dense model's, bit for bit. */
#include "passes/passes.h"
#include "passes/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SKIP_MAX_VARIANTS 256

typedef struct SkipSpec {
	SkipKind kind;
	int64_t n_max, n_min, ctx;  /* schedule: linear(n_max, n_min, ctx) */
	double threshold;           /* ffn: T */
	int64_t warmup;             /* ffn: positions below N run dense */
	int64_t cold[64]; uint32_t ncold; /* ffn: layers whose FFN always runs untested */
	int64_t lo, hi;             /* ffn: candidate range a..b (half open); hi < 0: all */
	int64_t buckets;            /* router: N */
	const char *calib;          /* router: calibration file, resolved; NULL if none */
	Loc loc;
} SkipSpec;

/* Step 1: one statement's options into a spec.  (The one place that reads them.) */
static void
read_skip(Module *m, const PolicyStmt *s, SkipSpec *k)
{
	const PolicySkip *p = &s->skip;
	*k = (SkipSpec){ .kind = p->kind, .threshold = 1.0, .hi = -1, .buckets = 1, .loc = s->loc };
	k->n_max = p->n_max;
	k->n_min = p->n_min;
	k->ctx = p->ctx;
	if (ir_policy_given(s, PK_SKIP_THRESHOLD))
		k->threshold = p->threshold;
	k->warmup = p->warmup;
	for (uint32_t c = 0; ir_policy_given(s, PK_SKIP_COLD) && c < p->cold.n && k->ncold < 64; c++)
		k->cold[k->ncold++] = p->cold.list[c];
	if (ir_policy_given(s, PK_SKIP_LAYERS)) {
		k->lo = p->layers.lo;
		k->hi = p->layers.hi;
	}
	if (ir_policy_given(s, PK_SKIP_BUCKETS))
		k->buckets = p->buckets;
	if (ir_policy_given(s, PK_SKIP_CALIBRATE) && p->calibrate) {
		Loc cl = s->key_loc[PK_SKIP_CALIBRATE];
		k->calib = pass_resolve_path(&m->arena, cl.file ? cl.file : s->loc.file, p->calibrate);
	}
}

/* ---- shared: knobs, stats, entries ---- */

static bool
has_regions(const Func *f)
{
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].code == OP_IF)
			return true;
	return false;
}

/* The index of the first (last) op of layer l in f, UINT32_MAX when none. */
static uint32_t
layer_op(const Func *f, int32_t l, bool last)
{
	uint32_t at = UINT32_MAX;
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].layer == l) {
			at = i;
			if (!last)
				break;
		}
	return at;
}

/* Every layer of entry f hands one value to the next; false after reporting. */
static bool
clean_layers(const Func *f, const PassLayers *ly, const char *what, Loc loc, Diag *d)
{
	for (int32_t l = 0; l < ly->nlayers; l++)
		if (ly->layer_in[l] == IR_NO_VALUE || ly->layer_out[l] == IR_NO_VALUE) {
			diag_error(d, loc, "%s: layer %d of entry '%s' is not one residual block (one value must flow "
			           "between layers)", what, l, f->name);
			return false;
		}
	return true;
}

/* A variant: the layers it runs, and when it is chosen (the first position of a
 * schedule budget, or the bucket). */
typedef struct Variant {
	bool *run;           /* [nlayers] */
	int64_t nrun;
	int64_t key;         /* schedule: first position; router: bucket */
} Variant;

static void
variants_free(Variant *v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(v[i].run);
	free(v);
}

/* The step entry f with a dispatch after op `split` (index of the last op before
 * it): sel is a value of the new entry the conditions compare (pos or the
 * bucket) with each variant's key (pred: cmp predicate); variants v[1..n) are
 * tested from the last, v[0] falls through.  `emit_sel` builds sel at the split
 * point.  False after reporting. */
typedef ValueId (*SelFn)(Replay *rp, void *user);

static bool
dispatch_entry(Module *m, Func *f, uint32_t split, const Variant *v, uint32_t n, int64_t pred, SelFn emit_sel,
               void *user, Diag *d)
{
	PassLayers ly;
	pass_find_layers(m, f, &ly);
	Replay rp;
	pass_replay_begin(&rp, m, f, d);
	for (uint32_t i = 0; i <= split && i < f->nops; i++)
		pass_replay_op(&rp, i);
	ValueId sel = emit_sel(&rp, user);
	bool ok = sel != IR_NO_VALUE;
	for (uint32_t k = n; ok && k-- > 1;) {
		ValueId key = ir_b_const_i32(&rp.b, (int32_t)v[k].key, f->loc);
		ValueId c = pass_replay_op2(&rp, OP_CMP, sel, key, pred, f->loc);
		ir_b_op(&rp.b, OP_IF, &c, 1, NULL, NULL, f->loc);
		ok = pass_replay_variant(&rp, &ly, split + 1, v[k].run, false) != IR_NO_VALUE;
		ir_b_op(&rp.b, OP_END, NULL, 0, NULL, NULL, f->loc);
	}
	ok = ok && pass_replay_variant(&rp, &ly, split + 1, v[0].run, true) != IR_NO_VALUE;
	if (!ok)
		diag_error(d, f->loc, "skip: entry '%s' has no top-level 'ret' to specialise", f->name);
	pass_replay_end(&rp, ok);
	pass_layers_free(&ly);
	return ok;
}

/* The layer set of each variant as text: "0, 7..11". */
static void
layer_set_text(const bool *run, int32_t L, char *buf, size_t n)
{
	size_t k = 0;
	buf[0] = 0;
	for (int32_t l = 0; l < L && k + 24 < n; l++) {
		if (!run[l] || (l > 0 && run[l - 1]))
			continue;
		int32_t e = l;
		while (e + 1 < L && run[e + 1])
			e++;
		k += (size_t)snprintf(buf + k, n - k, k ? ", %d" : "%d", l);
		if (e > l)
			k += (size_t)snprintf(buf + k, n - k, "..%d", e + 1);
	}
}

/* ---- step 2: SkipDecode ---- */

/* The layer budget at position t: n_min + ceil((n_max - n_min) * (ctx - t) / ctx)
 * for t < ctx (n_max at t = 0, then down by one every ctx / (n_max - n_min)
 * positions, rounded up so the budget never falls below the line), n_min from
 * t = ctx on.  Non-increasing in t. */
static int64_t
budget(const SkipSpec *k, int64_t t)
{
	if (t >= k->ctx)
		return k->n_min;
	return k->n_min + ((k->n_max - k->n_min) * (k->ctx - t) + k->ctx - 1) / k->ctx;
}

/* The longest KV cache: positions at or past it never reach a step. */
static int64_t
horizon(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nstates; i++)
		n = m->states[i].ctx > n ? m->states[i].ctx : n;
	return n;
}

static ValueId
sel_pos(Replay *rp, void *user)
{
	int32_t a = *(int32_t *)user;
	for (uint32_t i = 0; i < rp->src->nops; i++)
		if (rp->src->ops[i].code == OP_ARG && rp->src->ops[i].ia[0] == a && rp->map[rp->src->ops[i].dst] != IR_NO_VALUE)
			return rp->map[rp->src->ops[i].dst];
	return ir_b_arg(&rp->b, (uint32_t)a, rp->src->loc);
}

static bool
skip_schedule(Module *m, const SkipSpec *k, Diag *d)
{
	int32_t L = m->nlayers;
	if (k->n_max > L || k->n_min < 1 || k->n_min > k->n_max || k->ctx < 1) {
		diag_error(d, k->loc, "skip schedule: linear(%lld, %lld, %lld) does not fit a model of %d layers (1 <= "
		           "n_min <= n_max <= layers, ctx >= 1)", (long long)k->n_max, (long long)k->n_min,
		           (long long)k->ctx, L);
		return false;
	}
	/* the distinct budgets, by first position; unreachable ones (past the caches) go */
	int64_t hz = horizon(m), last = k->ctx < hz || hz == 0 ? k->ctx : hz - 1;
	Variant *v = xcalloc(SKIP_MAX_VARIANTS, sizeof *v);
	uint32_t n = 0;
	for (int64_t t = 0; t <= last && n < SKIP_MAX_VARIANTS; t++) {
		int64_t b = budget(k, t);
		if (n && v[n - 1].nrun == b)
			continue;
		v[n] = (Variant){ .run = xcalloc((size_t)L + 1, 1), .nrun = b, .key = t };
		for (int32_t l = 0; l < L; l++)
			v[n].run[l] = l == 0 || l >= L - (b - 1);
		n++;
	}
	bool ok = true;
	for (uint32_t i = 0; i < m->nfuncs && ok; i++) {
		Func *f = m->funcs[i];
		if (f->kind != FN_STEP || (n == 1 && v[0].nrun == L))
			continue;
		int32_t pa = pass_pos_arg(f);
		PassLayers ly;
		pass_find_layers(m, f, &ly);
		ok = clean_layers(f, &ly, "skip schedule", k->loc, d);
		pass_layers_free(&ly);
		if (ok && (pa < 0 || has_regions(f))) {
			diag_error(d, k->loc, "skip schedule: step entry '%s' %s", f->name,
			           pa < 0 ? "has no position argument" : "already has control flow (an early exit): "
			                                                 "schedules and exits do not combine yet");
			ok = false;
		}
		if (ok)
			ok = dispatch_entry(m, f, layer_op(f, 0, true), v, n, 1, sel_pos, &pa, d);
	}
	if (ok) {
		char buf[4096], set[512];
		int w = snprintf(buf, sizeof buf, "layer-skip: schedule linear(%lld, %lld, %lld), %u step variant%s\n",
		                 (long long)k->n_max, (long long)k->n_min, (long long)k->ctx, n, n == 1 ? "" : "s");
		for (uint32_t i = 0; i < n && w < (int)sizeof buf - 600; i++) {
			layer_set_text(v[i].run, L, set, sizeof set);
			w += snprintf(buf + w, sizeof buf - (size_t)w, "  positions >= %lld: %lld layers {%s}\n",
			              (long long)v[i].key, (long long)v[i].nrun, set);
		}
		pass_add_notes(m, buf);
	}
	variants_free(v, n);
	return ok;
}

/* ---- step 3: per-sequence routing ---- */

typedef struct Router {
	int32_t rank[64];     /* the ranked set R */
	uint32_t nrank;
	int32_t *param;       /* [nlayers] router param of each layer, -1 if none */
	bool routers;         /* the model declares router tensors */
	double tau;           /* default threshold */
} Router;

/* Cosine of each row pair, in double. */
static double
row_cos(const float *a, const float *b, int64_t n)
{
	double ab = 0, aa = 0, bb = 0;
	for (int64_t i = 0; i < n; i++) {
		ab += (double)a[i] * b[i];
		aa += (double)a[i] * a[i];
		bb += (double)b[i] * b[i];
	}
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Ranks candidates 1..L-2 by block influence on the calibration text, and sets the
 * default threshold: the median over calibration prompts (chunks of the prefill's
 * bound) of the smallest cos(in, out) of the ranked layers over the prompt, so that
 * about half of them take the deepest bucket.  False after reporting. */
static bool
rank_by_calibration(Module *m, const SkipSpec *k, Router *r, Diag *d)
{
	int32_t L = m->nlayers;
	Func *ref = prune_calib_entry(m);
	if (!ref) {
		diag_error(d, k->loc, "skip layers: the model has no entry to calibrate with");
		return false;
	}
	PassLayers ly;
	pass_find_layers(m, ref, &ly);
	bool ok = clean_layers(ref, &ly, "skip layers", k->loc, d);
	uint32_t *ops = xmalloc(((size_t)L + 1) * sizeof *ops);
	for (int32_t l = 0; l < L && ok; l++) {
		if (l == 0)
			ops[0] = ref->vals[ly.layer_in[0]].def;
		ops[l + 1] = ref->vals[ly.layer_out[l]].def;
	}
	pass_layers_free(&ly);
	int32_t *tok = NULL;
	int64_t ntok = 0;
	char err[512];
	PruneCalib cal = { 0 };
	if (ok && !prune_read_tokens(k->calib, 4096, &tok, &ntok, err, sizeof err)) {
		diag_error(d, k->loc, "%s", err);
		ok = false;
	}
	ok = ok && prune_need_data(m, d, k->loc);
	if (ok && !prune_calibrate(m, ref, tok, ntok, NULL, ops, (uint32_t)L + 1, &cal, err, sizeof err)) {
		diag_error(d, k->loc, "calibration failed: %s", err);
		ok = false;
	}
	free(ops);
	free(tok);
	if (!ok)
		return false;
	/* rank: lowest block influence first (insertion sort, ties to the deeper layer) */
	double bi[256];
	uint32_t n = 0;
	for (int32_t l = L - 2; l >= 1 && n < 64; l--) {
		bi[l] = prune_bi(cal.states[l], cal.states[l + 1], cal.rows, cal.dim);
		uint32_t at = n++;
		for (; at > 0 && bi[r->rank[at - 1]] > bi[l]; at--)
			r->rank[at] = r->rank[at - 1];
		r->rank[at] = l;
	}
	r->nrank = n < (uint32_t)(k->buckets - 1) ? n : (uint32_t)(k->buckets - 1);
	/* the default threshold from the prompts' smallest cosines */
	int64_t bound = cal.rows;
	for (uint32_t a = 0; a < ref->nargs; a++)
		if (ref->args[a].type.rank >= 1 && ref->args[a].type.dyn0)
			bound = ref->args[a].type.dims[0];
	if (ref->kind == FN_STEP || bound <= 0)
		bound = cal.rows;
	int64_t nch = (cal.rows + bound - 1) / bound;
	double *mins = xmalloc((size_t)(nch + 1) * sizeof *mins);
	for (int64_t c = 0; c < nch; c++) {
		mins[c] = 1.0;
		for (int64_t row = c * bound; row < cal.rows && row < (c + 1) * bound; row++)
			for (uint32_t q = 0; q < r->nrank; q++) {
				int32_t l = r->rank[q];
				double cs = row_cos(cal.states[l] + row * cal.dim, cal.states[l + 1] + row * cal.dim, cal.dim);
				mins[c] = cs < mins[c] ? cs : mins[c];
			}
	}
	qsort(mins, (size_t)nch, sizeof *mins, cmp_double);
	r->tau = nch ? mins[nch / 2] : 1.0;
	/* a float strictly below the median passes it: the cmp is strict */
	r->tau = nextafterf((float)r->tau, -2.0f);
	free(mins);
	prune_calib_free(&cal);
	return true;
}

/* The router tensors `router[l]` of the model: f32[1, dim] per candidate layer. */
static bool
find_routers(const Module *m, Router *r)
{
	r->param = xmalloc(((size_t)m->nlayers + 1) * sizeof *r->param);
	for (int32_t l = 0; l < m->nlayers; l++)
		r->param[l] = -1;
	for (uint32_t i = 0; i < m->nparams; i++) {
		const Param *p = &m->params[i];
		if (strncmp(p->name, "router.", 7) == 0 && p->layer >= 0 && p->layer < m->nlayers) {
			r->param[p->layer] = (int32_t)i;
			r->routers = true;
		}
	}
	return r->routers;
}

/* Prefill: the per-layer tests over the prompt, the bucket, knob_set and stats,
 * emitted before the top-level ret. */
typedef struct RouteIds {
	int32_t tau, route, bucket; /* knobs */
	int32_t stat[64];           /* skip.router.bucketK */
} RouteIds;

static bool
route_prefill(Module *m, Func *f, const SkipSpec *k, const Router *r, const RouteIds *id, Diag *d)
{
	PassLayers ly;
	pass_find_layers(m, f, &ly);
	bool ok = clean_layers(f, &ly, "skip layers", k->loc, d);
	if (ok && has_regions(f)) {
		diag_error(d, k->loc, "skip layers: entry '%s' already has control flow", f->name);
		ok = false;
	}
	if (!ok) {
		pass_layers_free(&ly);
		return false;
	}
	Replay rp;
	pass_replay_begin(&rp, m, f, d);
	Loc loc = k->loc;
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (op->code == OP_RET) {
			ValueId tau = pass_replay_knob(&rp, id->tau, loc), pass = IR_NO_VALUE;
			ValueId b = ir_b_const_i32(&rp.b, 0, loc);
			for (uint32_t q = 0; q < r->nrank && ok; q++) {
				int32_t l = r->rank[q];
				ValueId in = rp.map[ly.layer_in[l]], out = rp.map[ly.layer_out[l]], t;
				if (r->routers) {
					ValueId w = ir_b_param(&rp.b, (uint32_t)r->param[l], loc);
					t = pass_replay_op2(&rp, OP_CMP, pass_replay_op2(&rp, OP_LINEAR, in, w, 0, loc), tau, 2, loc);
				} else {
					t = pass_replay_op2(&rp, OP_CMP, pass_replay_op2(&rp, OP_COSINE, in, out, 0, loc), tau, 0, loc);
				}
				ok = t != IR_NO_VALUE;
				pass = pass == IR_NO_VALUE ? t : pass_replay_op2(&rp, OP_AND, pass, t, 0, loc);
				ValueId args[3] = { pass, ir_b_const_i32(&rp.b, (int32_t)q + 1, loc), b };
				b = ir_b_op(&rp.b, OP_SELECT, args, 3, NULL, NULL, loc);
			}
			int64_t ia[IR_NIA] = { id->route };
			ir_b_op(&rp.b, OP_KNOB_SET, &b, 1, ia, NULL, loc);
			for (uint32_t q = 0; q <= r->nrank; q++) {
				ValueId c = pass_replay_op2(&rp, OP_CMP, b, ir_b_const_i32(&rp.b, (int32_t)q, loc), 4, loc);
				ir_b_op(&rp.b, OP_IF, &c, 1, NULL, NULL, loc);
				pass_replay_stat(&rp, id->stat[q], 1, loc);
				ir_b_op(&rp.b, OP_END, NULL, 0, NULL, NULL, loc);
			}
		}
		pass_replay_op(&rp, i);
	}
	pass_replay_end(&rp, ok);
	pass_layers_free(&ly);
	return ok;
}

static ValueId
sel_bucket(Replay *rp, void *user)
{
	const RouteIds *id = user;
	Loc loc = rp->src->loc;
	ValueId kb = pass_replay_knob(rp, id->bucket, loc), kr = pass_replay_knob(rp, id->route, loc);
	ValueId ge = pass_replay_op2(rp, OP_CMP, kb, ir_b_const_i32(&rp->b, 0, loc), 1, loc);
	ValueId args[3] = { ge, kb, kr };
	return ir_b_op(&rp->b, OP_SELECT, args, 3, NULL, NULL, loc);
}

static bool
skip_router(Module *m, const SkipSpec *k, Diag *d)
{
	int32_t L = m->nlayers;
	if (k->buckets < 1 || k->buckets > 64 || (k->buckets > 1 && k->buckets - 1 > L - 2)) {
		diag_error(d, k->loc, "skip layers: %lld buckets do not fit a model of %d layers (at most layers - 1: the "
		           "first and the last layer always run)", (long long)k->buckets, L);
		return false;
	}
	if (k->buckets == 1) {
		pass_add_notes(m, "layer-skip: router with one bucket: every layer runs\n");
		return true;
	}
	Router r = { .tau = 0 };
	bool routers = find_routers(m, &r);
	bool ok = true;
	if (!routers && !k->calib) {
		diag_error(d, k->loc, "skip layers: the model declares no router tensors ('router[l]': f32[1, dim]) and the "
		           "statement has no 'calibrate \"FILE\"' to score the layers with");
		ok = false;
	}
	if (ok && k->calib) {
		double tau = r.tau;
		ok = rank_by_calibration(m, k, &r, d);
		if (routers)
			r.tau = tau;
	} else if (ok) {
		for (int32_t l = L - 2; l >= 1 && r.nrank < (uint32_t)(k->buckets - 1); l--)
			r.rank[r.nrank++] = l;
	}
	for (uint32_t q = 0; ok && routers && q < r.nrank; q++)
		if (r.param[r.rank[q]] < 0) {
			diag_error(d, k->loc, "skip layers: the model declares router tensors, but none for layer %d",
			           r.rank[q]);
			ok = false;
		}
	if (!ok) {
		free(r.param);
		return false;
	}
	uint32_t nb = r.nrank + 1;
	RouteIds id;
	id.tau = pass_knob(m, "skip.router.threshold", DT_F32, r.tau, routers ? -1e30 : -1.0, routers ? 1e30 : 2.0, k->loc);
	id.route = pass_knob(m, "skip.route", DT_I32, 0, 0, nb - 1, k->loc);
	id.bucket = pass_knob(m, "skip.bucket", DT_I32, -1, -1, nb - 1, k->loc);
	for (uint32_t q = 0; q < nb; q++)
		id.stat[q] = pass_stat(m, arena_printf(&m->arena, "skip.router.bucket%u", q), k->loc);
	Variant *v = xcalloc(nb, sizeof *v);
	int32_t first = L;
	for (uint32_t q = 0; q < nb; q++) {
		v[q] = (Variant){ .run = xcalloc((size_t)L + 1, 1), .nrun = L - q, .key = q };
		for (int32_t l = 0; l < L; l++)
			v[q].run[l] = true;
		for (uint32_t s = 0; s < q; s++)
			v[q].run[r.rank[s]] = false;
		if (q < r.nrank)
			first = r.rank[q] < first ? r.rank[q] : first;
	}
	for (uint32_t i = 0; i < m->nfuncs && ok; i++) {
		Func *f = m->funcs[i];
		if (f->kind == FN_PREFILL) {
			ok = route_prefill(m, f, k, &r, &id, d);
		} else if (f->kind == FN_STEP) {
			PassLayers ly;
			pass_find_layers(m, f, &ly);
			ok = clean_layers(f, &ly, "skip layers", k->loc, d);
			pass_layers_free(&ly);
			if (ok && has_regions(f)) {
				diag_error(d, k->loc, "skip layers: step entry '%s' already has control flow (an early exit): "
				           "routing and exits do not combine yet", f->name);
				ok = false;
			}
			uint32_t at = layer_op(f, first, false);
			if (ok)
				ok = dispatch_entry(m, f, at == 0 ? 0 : at - 1, v, nb, 4, sel_bucket, &id, d);
		}
	}
	if (ok) {
		char buf[4096], set[512];
		int w = snprintf(buf, sizeof buf, "layer-skip: router (%s), ranked layers", routers ? "router tensors"
		                                                                                    : "block influence");
		for (uint32_t q = 0; q < r.nrank; q++)
			w += snprintf(buf + w, sizeof buf - (size_t)w, " %d", r.rank[q]);
		w += snprintf(buf + w, sizeof buf - (size_t)w, ", threshold %g, %u step variants\n", r.tau, nb);
		for (uint32_t q = 0; q < nb && w < (int)sizeof buf - 600; q++) {
			layer_set_text(v[q].run, L, set, sizeof set);
			w += snprintf(buf + w, sizeof buf - (size_t)w, "  bucket %u: %lld layers {%s}\n", q,
			              (long long)v[q].nrun, set);
		}
		pass_add_notes(m, buf);
	}
	variants_free(v, nb);
	free(r.param);
	return ok;
}

/* ---- step 4: FFN skipping ---- */

typedef struct FfnIds {
	int32_t threshold;  /* knob */
	int32_t *stat;      /* [nlayers] skip.ffn.layerL, -1 where never skipped */
} FfnIds;

/* Runs the FFN block b (source ops first..b->ops' add) and returns the token's test:
 * cos(block in, block out) > threshold, and pos >= warmup. */
static ValueId
ffn_run_test(Replay *rp, const SkipSpec *k, const FfnIds *id, uint32_t first, uint32_t add, const PassBlock *b,
             ValueId pos)
{
	for (uint32_t i = first; i <= add; i++)
		pass_replay_op(rp, i);
	Loc loc = k->loc;
	ValueId c = pass_replay_op2(rp, OP_COSINE, rp->map[b->in], rp->map[b->out], 0, loc);
	ValueId t = pass_replay_op2(rp, OP_CMP, c, pass_replay_knob(rp, id->threshold, loc), 0, loc);
	if (k->warmup > 0 && pos != IR_NO_VALUE) {
		ValueId w = pass_replay_op2(rp, OP_CMP, pos, ir_b_const_i32(&rp->b, (int32_t)k->warmup, loc), 1, loc);
		t = pass_replay_op2(rp, OP_AND, t, w, 0, loc);
	}
	return t;
}

/* The FFN block of layer l as a contiguous run of source ops; false when it is not. */
static bool
ffn_span(const PassBlock *b, uint32_t *first, uint32_t *add)
{
	uint32_t lo = UINT32_MAX, hi = 0;
	for (uint32_t j = 0; j < b->nops; j++) {
		lo = b->ops[j] < lo ? b->ops[j] : lo;
		hi = b->ops[j] > hi ? b->ops[j] : hi;
	}
	*first = lo;
	*add = hi;
	return hi - lo + 1 == b->nops && hi == b->ops[b->nops - 1];
}

static bool
ffn_entry(Module *m, Func *f, const SkipSpec *k, const bool *cand, const FfnIds *id, Diag *d)
{
	PassLayers ly;
	pass_find_layers(m, f, &ly);
	int32_t L = m->nlayers;
	uint32_t *first = xmalloc(((size_t)L + 1) * sizeof *first), *add = xmalloc(((size_t)L + 1) * sizeof *add);
	const PassBlock **blk = xcalloc((size_t)L + 1, sizeof *blk);
	bool ok = true;
	for (int32_t l = 0; l < L && ok; l++) {
		first[l] = UINT32_MAX;
		if (!cand[l])
			continue;
		blk[l] = pass_find_block(&ly, l, PB_FFN);
		if (!blk[l] || !ffn_span(blk[l], &first[l], &add[l])) {
			diag_error(d, k->loc, "skip ffn: layer %d of entry '%s' has no FFN block (x + ffn(norm(x)) as one run "
			           "of ops after the attention block)", l, f->name);
			ok = false;
		}
	}
	int32_t pa = pass_pos_arg(f);
	Replay rp;
	pass_replay_begin(&rp, m, f, d);
	ValueId flag = IR_NO_VALUE, pos = IR_NO_VALUE;
	for (uint32_t i = 0; i < f->nops && ok;) {
		const Op *op = &f->ops[i];
		int32_t l = op->layer;
		if (l < 0 || l >= L || first[l] != i) {
			ValueId v = pass_replay_op(&rp, i);
			if (op->code == OP_ARG && op->ia[0] == pa)
				pos = v;
			i++;
			continue;
		}
		const PassBlock *b = blk[l];
		rp.b.layer = l;
		if (flag == IR_NO_VALUE) {
			flag = ffn_run_test(&rp, k, id, first[l], add[l], b, pos);
		} else {
			ValueId in = rp.map[b->in];
			ir_b_op(&rp.b, OP_IF, &flag, 1, NULL, NULL, k->loc);
			pass_replay_stat(&rp, id->stat[l], 1, k->loc);
			ir_b_op(&rp.b, OP_ELSE, NULL, 0, NULL, NULL, k->loc);
			ValueId now = ffn_run_test(&rp, k, id, first[l], add[l], b, pos);
			ValueId out = rp.map[b->out];
			ir_b_op(&rp.b, OP_END, NULL, 0, NULL, NULL, k->loc);
			rp.map[b->out] = pass_replay_op2(&rp, OP_PHI, in, out, 0, k->loc);
			flag = pass_replay_op2(&rp, OP_PHI, flag, now, 0, k->loc);
		}
		ok = flag != IR_NO_VALUE && rp.map[b->out] != IR_NO_VALUE;
		rp.b.layer = -1;
		i = add[l] + 1;
	}
	pass_replay_end(&rp, ok);
	pass_layers_free(&ly);
	free(first);
	free(add);
	free(blk);
	return ok;
}

static bool
skip_ffn(Module *m, const SkipSpec *k, Diag *d)
{
	int32_t L = m->nlayers;
	bool *cand = xcalloc((size_t)L + 1, 1);
	int32_t lo = (int32_t)(k->lo > 0 ? k->lo : 0), hi = (int32_t)(k->hi >= 0 && k->hi < L ? k->hi : L);
	for (int32_t l = lo; l < hi; l++)
		cand[l] = true;
	for (uint32_t c = 0; c < k->ncold; c++)
		if (k->cold[c] >= 0 && k->cold[c] < L)
			cand[k->cold[c]] = false;
	FfnIds id = { .threshold = pass_knob(m, "skip.ffn.threshold", DT_F32, k->threshold, 0, 2, k->loc) };
	id.stat = xmalloc(((size_t)L + 1) * sizeof *id.stat);
	char buf[1024];
	int w = snprintf(buf, sizeof buf, "layer-skip: ffn when cos(in, out) > %g, warmup %lld positions, skippable "
	                 "FFN blocks of layers", k->threshold, (long long)k->warmup);
	bool seen = false;
	for (int32_t l = 0; l < L; l++) {
		id.stat[l] = -1;
		if (cand[l] && seen) {
			id.stat[l] = pass_stat(m, arena_printf(&m->arena, "skip.ffn.layer%d", l), k->loc);
			w += snprintf(buf + w, sizeof buf - (size_t)w, " %d", l);
		}
		seen |= cand[l];
	}
	snprintf(buf + w, sizeof buf - (size_t)w, "\n");
	bool ok = true;
	for (uint32_t i = 0; i < m->nfuncs && ok; i++)
		if (m->funcs[i]->kind == FN_STEP)
			ok = ffn_entry(m, m->funcs[i], k, cand, &id, d);
	if (ok)
		pass_add_notes(m, buf);
	free(cand);
	free(id.stat);
	return ok;
}

/* ---- the pass ---- */

bool
pass_layer_skip(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, POL_SKIP))
		return true;
	SkipSpec spec[SK_COUNT];
	bool have[SK_COUNT] = { false };
	for (uint32_t i = 0; i < m->policy->nstmts; i++) {
		const PolicyStmt *s = &m->policy->stmts[i];
		if (s->verb != POL_SKIP)
			continue;
		SkipSpec k;
		read_skip(m, s, &k);
		if (have[k.kind]) {
			diag_error(d, s->loc, "skip: one 'skip %s' statement per policy",
			           k.kind == SK_ROUTER ? "layers" : ir_policy_subject_name(s));
			return false;
		}
		have[k.kind] = true;
		spec[k.kind] = k;
	}
	if (have[SK_SCHEDULE] + have[SK_ROUTER] + have[SK_FFN] > 1) {
		diag_error(d, (have[SK_ROUTER] ? spec[SK_ROUTER] : spec[SK_FFN]).loc, "skip: one of 'skip schedule', "
		           "'skip layers' and 'skip ffn' per policy (each chooses the layers of a step; they do not "
		           "combine yet)");
		return false;
	}
	bool ok = true;
	if (have[SK_SCHEDULE])
		ok = skip_schedule(m, &spec[SK_SCHEDULE], d);
	if (ok && have[SK_ROUTER])
		ok = skip_router(m, &spec[SK_ROUTER], d);
	if (ok && have[SK_FFN])
		ok = skip_ffn(m, &spec[SK_FFN], d);
	if (ok)
		pass_drop_stmts(m, POL_SKIP);
	return ok;
}
