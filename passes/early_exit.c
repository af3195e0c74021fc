/* early_exit.c - the `early-exit` pass: the policy's `exit` statement becomes exit
 * sites in the IR (CALM's confidence measures and decaying threshold, PABEE's
 * patience, and CALM's K/V state propagation; docs/techniques.md section A).
 * Site s means "after the first s layers": 1 <= s < layers.
 *   1. read the statement (read_exit), check the sites, the head (a FN_HELPER the
 *      front end kept) and 'kv none' (only where no entry reads a KV cache later);
 *      declare the run-time knobs (exit.threshold, exit.decay, exit.patience) and
 *      the stat slots (exit.siteS per site, exit.kv_only_layers);
 *   2. per 'step' and 'forward' entry ('prefill' runs every layer), replay the op
 *      array into a new one; after the last op of layer s-1's region, for site s:
 *        a. h = the hidden state leaving layer s-1 (the one value the region hands
 *           to later ops); the head is inlined on h when the measure or patience
 *           needs its logits;
 *        b. the confidence (margin | maxprob | entropy of the logits, or state_cos:
 *           cos(h, the state entering layer s-1)) against the threshold knob,
 *           decayed with the position when asked; patience counts consecutive
 *           sites whose argmax agrees; the test is their 'or';
 *        c. `if %exit {site = s}`: the head's logits if not yet computed; with
 *           'kv propagate', for every later layer j, the ops that compute that
 *           layer's K and V from its input, cloned with h as the input, and a
 *           kv_write into layer j's cache; stat bumps; `ret logits {layers = s}`;
 *           `end`;
 *   3. remove the head helpers, drop the statement, and add manifest notes.
 * Needs: layer regions contiguous and in order, one residual value between layers,
 * no control flow yet.  Keeps: SSA, the dense path's ops and their order (at neutral
 * settings the result is the dense model's, bit for bit). */
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* EM_COUNT stands for "no measure" (patience alone). */
#define EM_NONE EM_COUNT

typedef struct ExitSpec {
	int64_t sites[64]; uint32_t nsites; /* increasing, after the first s layers */
	const char *head;                   /* name of the head fn */
	ExitMeasure measure;
	double threshold;
	bool decay; double tau;             /* CALM's decaying threshold */
	int64_t patience;                   /* 0: none */
	bool propagate;                     /* kv propagate (else kv none) */
	Loc loc, at_loc, kv_loc;            /* the statement, its 'at' and its 'kv' */
} ExitSpec;

/* Step 1: the statement's options into a spec.  (The one place that reads them.) */
static void
read_exit(const PolicyStmt *s, ExitSpec *e)
{
	const PolicyExit *x = &s->exit;
	*e = (ExitSpec){ .measure = EM_NONE, .threshold = 1.0, .propagate = x->kv != EKV_NONE, .loc = s->loc,
	                 .head = x->head, .patience = x->patience };
	for (uint32_t k = 0; k < x->at.n && e->nsites < 64; k++)
		e->sites[e->nsites++] = x->at.list[k];
	if (ir_policy_given(s, PK_EXIT_MEASURE))
		e->measure = x->measure;
	if (ir_policy_given(s, PK_EXIT_THRESHOLD))
		e->threshold = x->threshold;
	if (ir_policy_given(s, PK_EXIT_DECAY)) {
		e->decay = true;
		e->tau = x->decay;
	}
	if (!ir_policy_given(s, PK_EXIT_PATIENCE))
		e->patience = 0;
	if (e->measure == EM_NONE && !e->patience)
		e->measure = EM_MARGIN;
	e->at_loc = ir_policy_given(s, PK_EXIT_AT) ? s->key_loc[PK_EXIT_AT] : s->loc;
	e->kv_loc = ir_policy_given(s, PK_EXIT_KV) ? s->key_loc[PK_EXIT_KV] : s->loc;
	/* sites in increasing order, each once */
	for (uint32_t i = 1; i < e->nsites; i++)
		for (uint32_t k = i; k > 0 && e->sites[k - 1] > e->sites[k]; k--) {
			int64_t t = e->sites[k];
			e->sites[k] = e->sites[k - 1];
			e->sites[k - 1] = t;
		}
	uint32_t n = 0;
	for (uint32_t i = 0; i < e->nsites; i++)
		if (!n || e->sites[n - 1] != e->sites[i])
			e->sites[n++] = e->sites[i];
	e->nsites = n;
}

/* Step 2c: K and V of every layer j >= s from h, written into layer j's cache; false
 * after an error (a layer whose K or V does not come from its input alone). */
static bool
emit_kv_tail(Replay *rp, const PassLayers *ly, int32_t s, ValueId h, Diag *d)
{
	const Func *f = rp->src;
	ValueId *local = xmalloc((f->nvals + 1) * sizeof *local);
	bool ok = true;
	for (uint32_t i = 0; i < f->nops && ok; i++) {
		const Op *op = &f->ops[i];
		int32_t j = op->layer;
		if (op->code != OP_ATTENTION || op->ia[2] < 0 || j < s || j >= ly->nlayers)
			continue;
		for (uint32_t v = 0; v < f->nvals; v++)
			local[v] = IR_NO_VALUE;
		ValueId args[3];
		rp->b.layer = j;
		for (int a = 0; a < 3 && ok; a++)
			ok = (args[a] = pass_replay_slice(rp, op->args[a + 1], j, ly->layer_in[j], h, local)) != IR_NO_VALUE;
		int64_t ia[IR_NIA] = { 0, op->ia[1], op->ia[2] };
		if (ok)
			ir_b_op(&rp->b, OP_KV_WRITE, args, 3, ia, NULL, op->loc);
		else
			diag_error(d, op->loc, "exit: the K and V of layer %d do not come from the layer's input alone, so "
			           "'kv propagate' cannot recompute them from an exit state", j);
	}
	rp->b.layer = -1;
	free(local);
	return ok;
}

/* ---- step 1: knobs and stats ---- */

typedef struct ExitIds {
	int32_t threshold, tau, patience;   /* knob indices (-1: none) */
	int32_t site_stat[64];
	int32_t kv_stat;
} ExitIds;

static void
declare(Module *m, const ExitSpec *e, ExitIds *id)
{
	double hi = e->measure == EM_ENTROPY ? 1e30 : 1.0;
	id->threshold = e->measure != EM_NONE ? pass_knob(m, "exit.threshold", DT_F32, e->threshold, 0, hi, e->loc) : -1;
	id->tau = e->decay ? pass_knob(m, "exit.decay", DT_F32, e->tau, 0, 1e6, e->loc) : -1;
	id->patience = e->patience ? pass_knob(m, "exit.patience", DT_F32, (double)e->patience, 1, 1e6, e->loc) : -1;
	for (uint32_t i = 0; i < e->nsites; i++)
		id->site_stat[i] = pass_stat(m, arena_printf(&m->arena, "exit.site%lld", (long long)e->sites[i]), e->loc);
	id->kv_stat = e->propagate ? pass_stat(m, "exit.kv_only_layers", e->loc) : -1;
}

/* ---- step 2: one entry ---- */

typedef struct SiteCtx {
	const ExitSpec *e;
	const ExitIds *id;
	const Func *head;
	const PassLayers *ly;
	ValueId pos;        /* the entry's position (g), IR_NO_VALUE for encoders */
	int64_t horizon;    /* N of the decay: the longest sequence the entry sees */
	ValueId prev_arg, prev_cnt; /* patience: argmax and count of the previous site */
} SiteCtx;

/* Steps 2a-2c at site number k (s = e->sites[k]); h the state leaving layer s-1,
 * hin the state entering it. */
static bool
emit_site(Replay *rp, SiteCtx *sc, uint32_t k, ValueId h, ValueId hin)
{
	const ExitSpec *e = sc->e;
	Loc loc = e->loc;
	int32_t s = (int32_t)e->sites[k];
	Type ht = rp->g.vals[h].type, want = sc->head->args[0].type;
	if (!ir_type_eq(ht, want)) {
		char b1[96], b2[96];
		diag_error(rp->b.diag, loc, "exit head '%s' takes %s, but the hidden state after layer %d of '%s' is %s", e->head,
		           ir_type_str(want, b1, sizeof b1), s - 1, rp->src->name, ir_type_str(ht, b2, sizeof b2));
		return false;
	}
	ValueId logits = IR_NO_VALUE, cond = IR_NO_VALUE;
	if (e->measure != EM_STATE_COS || e->patience)
		logits = pass_replay_inline(rp, sc->head, &h);
	if (e->measure != EM_NONE) {
		ValueId c = e->measure == EM_STATE_COS ? pass_replay_op2(rp, OP_COSINE, h, hin, 0, loc)
		            : pass_replay_op2(rp, e->measure == EM_MARGIN ? OP_MARGIN : e->measure == EM_MAXPROB ? OP_MAXPROB : OP_ENTROPY,
		                  logits, IR_NO_VALUE, 0, loc);
		ValueId lam = pass_replay_knob(rp, sc->id->threshold, loc);
		if (e->decay && sc->pos != IR_NO_VALUE) {
			ValueId args[3] = { lam, pass_replay_knob(rp, sc->id->tau, loc), sc->pos };
			int64_t ia[IR_NIA] = { sc->horizon };
			lam = ir_b_op(&rp->b, OP_DECAY, args, 3, ia, NULL, loc);
		}
		cond = pass_replay_op2(rp, OP_CMP, c, lam, e->measure == EM_ENTROPY ? 2 : 0, loc);
	}
	if (e->patience) {
		ValueId a = pass_replay_op2(rp, OP_ARGMAX, logits, IR_NO_VALUE, 0, loc), cnt;
		if (sc->prev_arg == IR_NO_VALUE) {
			cnt = ir_b_const_f32(&rp->b, 0, loc);
		} else {
			ValueId same = pass_replay_op2(rp, OP_CMP, a, sc->prev_arg, 4, loc);
			ValueId one = ir_b_const_f32(&rp->b, 1, loc), zero = ir_b_const_f32(&rp->b, 0, loc);
			ValueId args[3] = { same, pass_replay_op2(rp, OP_ADD, sc->prev_cnt, one, 0, loc), zero };
			cnt = ir_b_op(&rp->b, OP_SELECT, args, 3, NULL, NULL, loc);
		}
		sc->prev_arg = a;
		sc->prev_cnt = cnt;
		ValueId p = pass_replay_op2(rp, OP_CMP, cnt, pass_replay_knob(rp, sc->id->patience, loc), 1, loc);
		cond = cond == IR_NO_VALUE ? p : pass_replay_op2(rp, OP_OR, cond, p, 0, loc);
	}
	int64_t site_ia[IR_NIA] = { s };
	ir_b_op(&rp->b, OP_IF, &cond, 1, site_ia, NULL, loc);
	if (logits == IR_NO_VALUE)
		logits = pass_replay_inline(rp, sc->head, &h);
	if (e->propagate && !emit_kv_tail(rp, sc->ly, s, h, rp->b.diag))
		return false;
	pass_replay_stat(rp, sc->id->site_stat[k], 1, loc);
	if (e->propagate) {
		pass_replay_stat(rp, sc->id->kv_stat, sc->ly->nlayers - s, loc);
	}
	ValueId r = ir_emit(rp->m, &rp->g, OP_RET, rp->g.vals[logits].type, &logits, 1, loc);
	ir_def(&rp->g, r)->ia[0] = s;
	ir_b_op(&rp->b, OP_END, NULL, 0, NULL, NULL, loc);
	return logits != IR_NO_VALUE;
}

/* The longest sequence an entry sees: the longest KV cache, else its sequence bound. */
static int64_t
horizon(const Module *m, const Func *f)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nstates; i++)
		n = m->states[i].ctx > n ? m->states[i].ctx : n;
	for (uint32_t a = 0; !n && a < f->nargs; a++)
		if (f->args[a].type.rank)
			n = f->args[a].type.dims[0];
	return n > 0 ? n : 1;
}

/* The index of the last op of layer l in f (UINT32_MAX when f has no such layer). */
static uint32_t
last_op_of(const Func *f, int32_t l)
{
	uint32_t last = UINT32_MAX;
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].layer == l)
			last = i;
	return last;
}

/* Replays entry f with the exit sites of e inserted (step 2). */
static bool
exit_entry(Module *m, Func *f, const ExitSpec *e, const ExitIds *id, const Func *head, Diag *d)
{
	for (uint32_t i = 0; i < f->nops; i++)
		if (f->ops[i].code == OP_IF) {
			diag_error(d, e->loc, "exit: entry '%s' already has control flow; early exit must come first", f->name);
			return false;
		}
	PassLayers ly;
	pass_find_layers(m, f, &ly);
	Replay rp;
	pass_replay_begin(&rp, m, f, d);
	SiteCtx sc = { .e = e, .id = id, .head = head, .ly = &ly, .pos = IR_NO_VALUE, .horizon = horizon(m, f),
	               .prev_arg = IR_NO_VALUE, .prev_cnt = IR_NO_VALUE };
	uint32_t *at = xmalloc((e->nsites + 1) * sizeof *at);
	for (uint32_t k = 0; k < e->nsites; k++)
		at[k] = last_op_of(f, (int32_t)e->sites[k] - 1);
	bool ok = true;
	uint32_t next = 0;
	for (uint32_t i = 0; i < f->nops && ok; i++) {
		const Op *op = &f->ops[i];
		ValueId v = pass_replay_op(&rp, i);
		if (op->code == OP_ARG && f->kind == FN_STEP && f->args[op->ia[0]].type.rank == 0 &&
		    (strcmp(f->args[op->ia[0]].name, "pos") == 0 || op->ia[0] == 1))
			sc.pos = v;
		for (; ok && next < e->nsites && at[next] == i; next++) {
			int32_t l = (int32_t)e->sites[next] - 1;
			ValueId h = ly.layer_out[l], hin = ly.layer_in[l];
			if (h == IR_NO_VALUE || (e->measure == EM_STATE_COS && hin == IR_NO_VALUE)) {
				diag_error(d, e->loc, "exit: cannot find the hidden state %s layer %d of '%s' (one value must "
				           "flow between layers)", h == IR_NO_VALUE ? "after" : "entering", l, f->name);
				ok = false;
				break;
			}
			ok = emit_site(&rp, &sc, next, rp.map[h], hin != IR_NO_VALUE ? rp.map[hin] : IR_NO_VALUE);
		}
	}
	if (ok && next < e->nsites) {
		diag_error(d, e->loc, "exit: entry '%s' has no layer %lld for site %lld", f->name,
		           (long long)e->sites[next] - 1, (long long)e->sites[next]);
		ok = false;
	}
	pass_replay_end(&rp, ok);
	pass_layers_free(&ly);
	free(at);
	return ok;
}

/* ---- the pass ---- */

/* Whether an entry of m reads a KV cache on a later call (decoders do). */
static bool
reads_caches(const Module *m)
{
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t k = 0; m->funcs[i]->kind == FN_STEP && k < m->funcs[i]->nops; k++)
			if (m->funcs[i]->ops[k].code == OP_ATTENTION && m->funcs[i]->ops[k].ia[2] >= 0)
				return true;
	return false;
}

static bool
check_spec(const Module *m, const ExitSpec *e, const Func **head, Diag *d)
{
	*head = e->head ? ir_find_func(m, e->head) : NULL;
	if (!*head || (*head)->kind != FN_HELPER || (*head)->nargs != 1) {
		diag_error(d, e->loc, "exit: head '%s' is not a fn of the model that takes the hidden state alone%s",
		           e->head ? e->head : "", *head && (*head)->nargs == 2 ? " (a head taking the layer as 'int' is "
		                                                               "not supported by early exit yet)" : "");
		return false;
	}
	for (uint32_t i = 0; i < e->nsites; i++)
		if (e->sites[i] < 1 || e->sites[i] >= m->nlayers) {
			diag_error(d, e->at_loc, "exit: site %lld is not between 1 and %d (a site is after the first N layers)",
			           (long long)e->sites[i], m->nlayers - 1);
			return false;
		}
	if (!e->propagate && reads_caches(m)) {
		diag_error(d, e->kv_loc, "exit: 'kv none' leaves the KV caches of the layers after an exit unwritten, and the "
		           "next tokens read them: use 'kv propagate' ('kv none' is for encoders)");
		return false;
	}
	return true;
}

bool
pass_early_exit(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, POL_EXIT))
		return true;
	const PolicyStmt *st = NULL;
	for (uint32_t i = 0; i < m->policy->nstmts; i++)
		if (m->policy->stmts[i].verb == POL_EXIT) {
			if (st) {
				diag_error(d, m->policy->stmts[i].loc, "exit: one 'exit' statement per policy");
				return false;
			}
			st = &m->policy->stmts[i];
		}
	ExitSpec e;
	read_exit(st, &e);
	const Func *head;
	if (!check_spec(m, &e, &head, d))
		return false;
	ExitIds id;
	declare(m, &e, &id);
	bool ok = true;
	for (uint32_t i = 0; i < m->nfuncs && ok; i++)
		if (m->funcs[i]->kind == FN_STEP || m->funcs[i]->kind == FN_FORWARD)
			ok = exit_entry(m, m->funcs[i], &e, &id, head, d);
	if (!ok)
		return false;
	for (uint32_t i = m->nfuncs; i-- > 0;)
		if (m->funcs[i]->kind == FN_HELPER)
			ir_remove_func(m, m->funcs[i]);
	pass_drop_stmts(m, POL_EXIT);
	const char *mname = e.measure == EM_NONE ? "none" : ir_vocab_name(&ir_measure_vocab, e.measure);
	char buf[512];
	int n = snprintf(buf, sizeof buf, "early-exit: sites");
	for (uint32_t i = 0; i < e.nsites && n < 400; i++)
		n += snprintf(buf + n, sizeof buf - (size_t)n, " %lld", (long long)e.sites[i]);
	snprintf(buf + n, sizeof buf - (size_t)n, ", head %s, measure %s, threshold %g%s, patience %lld, kv %s\n", e.head,
	         mname, e.threshold, e.decay ? " (decaying)" : "", (long long)e.patience,
	         e.propagate ? "propagate" : "none");
	pass_add_notes(m, buf);
	return true;
}
