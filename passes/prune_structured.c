/* prune_structured.c - the `prune-structured` pass: realises the policy's `prune`
 * statements at compile time (docs/techniques.md, "Structured pruning").
 *   1. read each `prune UNIT keep K score S layers a..b multiple N protect ...
 *      calibrate "FILE" tokens T` statement and check what needs the model
 *      (layer range inside the model; the width checks are in prune_width.c);
 *   2. cut: FFN neurons, attention heads or KV groups (prune_width.c), whole
 *      layers (prune_layers.c) or residual blocks (prune_sublayer.c), in statement order, each on the module left by the
 *      statements before it;
 *   3. retype every value, drop the statements realised from the policy (so a second
 *      run does not cut again), and append to Module.manifest_notes what went and the
 *      exact parameter count before and after.
 * Defaults: score l2 for widths, bi for layers and sublayers; the first and last layers are
 * protected unless `protect` says otherwise; kept FFN widths round to
 * PRUNE_DEFAULT_MULTIPLE; heads and groups to 1.  A statement that removes nothing
 * (keep 1.0) leaves the module byte-identical apart from the consumed statement.
 * Errors are reported at the option's location; nothing is changed by a statement
 * that fails its checks. */
#include "passes/passes.h"
#include "passes/prune.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const PolicyOpt *
opt(const PolicyStmt *s, const char *key)
{
	for (uint32_t i = 0; i < s->nopts; i++)
		if (strcmp(s->opts[i].key, key) == 0)
			return &s->opts[i];
	return NULL;
}

bool
prune_need_data(Module *m, Diag *d, Loc loc)
{
	bool missing = false;
	for (uint32_t i = 0; i < m->nparams; i++)
		missing |= !m->params[i].data;
	if (!missing)
		return true;
	if (!m->weights_path) {
		diag_error(d, loc, "pruning scores need the model's weights, but no weights file is given");
		return false;
	}
	const char *path = pass_resolve_path(&m->arena, loc.file, m->weights_path);
	return ir_load_params(m, path, d);
}

bool
prune_stmt_tokens(const PruneStmt *ps, Diag *d, int32_t **tok, int64_t *n)
{
	if (!ps->calib) {
		diag_error(d, ps->score_loc, "score '%s' needs calibration tokens (add 'calibrate \"FILE\"')",
		           prune_score_names[ps->score]);
		return false;
	}
	char err[512];
	if (!prune_read_tokens(ps->calib, ps->ntokens, tok, n, err, sizeof err)) {
		const PolicyOpt *o = opt(ps->s, "calibrate");
		diag_error(d, o ? o->loc : ps->loc, "%s", err);
		return false;
	}
	return true;
}

bool
prune_stmt_calibrate(Module *m, const PruneStmt *ps, Diag *d, const Func *ref, const bool *watch,
                     const uint32_t *state_op, uint32_t nstates, PruneCalib *cal)
{
	int32_t *tok = NULL;
	int64_t ntok = 0;
	bool ok = prune_stmt_tokens(ps, d, &tok, &ntok) && prune_need_data(m, d, ps->loc);
	if (ok) {
		char err[512];
		ok = prune_calibrate(m, ref, tok, ntok, watch, state_op, nstates, cal, err, sizeof err);
		if (!ok) {
			diag_error(d, ps->score_loc, "calibration failed: %s", err);
			prune_calib_free(cal);
		}
	}
	free(tok);
	return ok;
}

/* Step 1: the statement's options. */
static bool
read_stmt(Module *m, const PolicyStmt *s, Diag *d, PruneStmt *ps)
{
	/* ORDER: PruneUnit */
	static const char *const units[] = { "ffn_neuron", "head", "kv_group", "layer", "sublayer" };
	memset(ps, 0, sizeof *ps);
	ps->s = s;
	ps->loc = s->loc;
	int u = -1;
	for (int k = 0; k < 5; k++)
		if (s->subject && strcmp(s->subject, units[k]) == 0)
			u = k;
	if (u < 0) {
		diag_error(d, s->loc, "prune: expected a unit (ffn_neuron, head, kv_group, layer or sublayer), saw '%s'",
		           s->subject ? s->subject : "nothing");
		return false;
	}
	ps->unit = (PruneUnit)u;
	int64_t nl = m->nlayers;
	const PolicyOpt *o;
	bool whole = ps->unit == PU_LAYER || ps->unit == PU_SUBLAYER; /* scored by hidden states */
	ps->score = whole ? PS_BI : PS_L2;
	ps->score_loc = s->loc;
	if ((o = opt(s, "score"))) {
		int sc = prune_score_from_name(o->val.str);
		ps->score_loc = o->loc;
		bool layer_score = sc == PS_ANGULAR || sc == PS_BI;
		if (sc < 0 || (layer_score && !whole) || (sc == PS_MAW && ps->unit != PU_FFN) || (sc == PS_ACT && whole)) {
			diag_error(d, o->loc, "score '%s' does not apply to '%s'", o->val.str ? o->val.str : "?", units[u]);
			return false;
		}
		ps->score = (PruneScore)sc;
	}
	ps->block = -1;
	if ((o = opt(s, "block"))) {
		const char *b = o->val.str ? o->val.str : "?";
		ps->block = strcmp(b, "attention") == 0 ? PB_ATTN : strcmp(b, "ffn") == 0 ? PB_FFN : -2;
		if (ps->unit != PU_SUBLAYER) {
			diag_error(d, o->loc, "option 'block' applies to 'sublayer' only");
			return false;
		}
		if (ps->block == -2) {
			diag_error(d, o->loc, "expected 'attention' or 'ffn' after 'block', saw '%s'", b);
			return false;
		}
	}
	if (!(o = opt(s, "keep"))) {
		diag_error(d, s->loc, "'prune %s' needs 'keep'", units[u]);
		return false;
	}
	ps->keep_loc = o->loc;
	ps->keep = o->val.num;
	ps->keep_count = o->val.kind == PV_NUM && o->val.is_int;
	if (o->val.kind == PV_FRAC)
		ps->keep_text = arena_printf(&m->arena, "%lld/%lld", (long long)o->val.lo, (long long)o->val.hi);
	else
		ps->keep_text = arena_printf(&m->arena, ps->keep_count ? "%.0f" : "%g", o->val.num);
	if (!(ps->keep > 0) || (!ps->keep_count && ps->keep > 1)) {
		diag_error(d, o->loc, "keep %s is outside (0, 1]", ps->keep_text);
		return false;
	}
	ps->cand = arena_alloc(&m->arena, (size_t)(nl + 1));
	int64_t lo = 0, hi = nl;
	if ((o = opt(s, "layers"))) {
		lo = o->val.kind == PV_RANGE ? o->val.lo : 0;
		hi = o->val.kind == PV_RANGE ? o->val.hi : 0;
		if (lo < 0 || hi > nl || lo >= hi) {
			diag_error(d, o->loc, "layer range %lld..%lld is outside the model's %lld layers", (long long)lo,
			           (long long)hi, (long long)nl);
			return false;
		}
	}
	for (int64_t l = lo; l < hi; l++)
		ps->cand[l] = true;
	if ((o = opt(s, "protect"))) {
		for (uint32_t i = 0; i < o->val.nints; i++)
			if (o->val.ints[i] >= 0 && o->val.ints[i] < nl)
				ps->cand[o->val.ints[i]] = false;
	} else if (nl > 0) {
		ps->cand[0] = ps->cand[nl - 1] = false;
	}
	ps->multiple = ps->unit == PU_FFN ? PRUNE_DEFAULT_MULTIPLE : 1;
	if ((o = opt(s, "multiple"))) {
		if (o->val.num < 1) {
			diag_error(d, o->loc, "multiple must be at least 1, saw %g", o->val.num);
			return false;
		}
		ps->multiple = (int64_t)o->val.num;
	}
	ps->ntokens = 512;
	if ((o = opt(s, "tokens")))
		ps->ntokens = (int64_t)o->val.num;
	if ((o = opt(s, "calibrate")))
		ps->calib = pass_resolve_path(&m->arena, o->loc.file ? o->loc.file : s->loc.file, o->val.str);
	return true;
}

bool
pass_prune_structured(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, "prune"))
		return true;
	Policy *p = m->policy;
	PassNotes pn;
	pass_notes_begin(&pn, m);
	bool ok = true, changed = false;
	for (uint32_t i = 0; i < p->nstmts && !diag_too_many(d); i++) {
		const PolicyStmt *s = &p->stmts[i];
		if (!s->verb || strcmp(s->verb, "prune") != 0)
			continue;
		PruneStmt ps;
		if (!read_stmt(m, s, d, &ps)) {
			ok = false;
			continue;
		}
		ps.notes = pn.f;
		bool r = ps.unit == PU_LAYER      ? prune_layers(m, &ps, d)
		         : ps.unit == PU_SUBLAYER ? prune_sublayers(m, &ps, d)
		                                  : prune_width(m, &ps, d);
		ok &= r;
		changed |= ps.changed;
		/* the next statement calibrates on the module this one left */
		char err[256];
		if (r && ps.changed && !pass_retype(m, err, sizeof err)) {
			diag_error(d, s->loc, "internal error: pruned module does not type-check: %s", err);
			ok = false;
			break;
		}
	}
	pass_notes_end(&pn, m, "prune-structured", changed, ok);
	if (ok) /* the statements are realised: a second run cuts nothing */
		pass_drop_stmts(m, "prune");
	return ok;
}
