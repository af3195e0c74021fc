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
		           ir_vocab_name(&ir_score_vocab, ps->score));
		return false;
	}
	char err[512];
	if (!prune_read_tokens(ps->calib, ps->ntokens, tok, n, err, sizeof err)) {
		diag_error(d, ir_policy_given(ps->s, PK_PRUNE_CALIBRATE) ? ps->s->key_loc[PK_PRUNE_CALIBRATE] : ps->loc, "%s",
		           err);
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

/* Step 1: the statement's fields (typed and checked when the policy was read) with
 * the defaults; what depends on the module as it is now is checked here. */
static bool
read_stmt(Module *m, const PolicyStmt *s, Diag *d, PruneStmt *ps)
{
	const PolicyPrune *pr = &s->prune;
	memset(ps, 0, sizeof *ps);
	ps->s = s;
	ps->loc = s->loc;
	ps->unit = pr->unit;
	const char *unit = ir_vocab_name(&ir_unit_vocab, pr->unit);
	int64_t nl = m->nlayers;
	bool whole = ps->unit == PU_LAYER || ps->unit == PU_SUBLAYER; /* scored by hidden states */
	ps->score = whole ? PS_BI : PS_L2;
	ps->score_loc = s->loc;
	if (ir_policy_given(s, PK_PRUNE_SCORE)) {
		PruneScore sc = pr->score;
		ps->score_loc = s->key_loc[PK_PRUNE_SCORE];
		bool layer_score = sc == PS_ANGULAR || sc == PS_BI;
		if ((layer_score && !whole) || (sc == PS_MAW && ps->unit != PU_FFN) || (sc == PS_ACT && whole)) {
			diag_error(d, ps->score_loc, "score '%s' does not apply to '%s'", ir_vocab_name(&ir_score_vocab, sc), unit);
			return false;
		}
		ps->score = sc;
	}
	ps->block = ir_policy_given(s, PK_PRUNE_BLOCK) ? (int)pr->block : -1;
	if (!ir_policy_given(s, PK_PRUNE_KEEP)) {
		diag_error(d, s->loc, "'prune %s' needs 'keep'", unit);
		return false;
	}
	ps->keep_loc = s->key_loc[PK_PRUNE_KEEP];
	ps->keep = pr->keep.value;
	ps->keep_count = pr->keep.count;
	if (pr->keep.den > 0)
		ps->keep_text = arena_printf(&m->arena, "%lld/%lld", (long long)pr->keep.num, (long long)pr->keep.den);
	else
		ps->keep_text = arena_printf(&m->arena, ps->keep_count ? "%.0f" : "%g", ps->keep);
	if (!(ps->keep > 0) || (!ps->keep_count && ps->keep > 1)) {
		diag_error(d, ps->keep_loc, "keep %s is outside (0, 1]", ps->keep_text);
		return false;
	}
	ps->cand = arena_alloc(&m->arena, (size_t)(nl + 1));
	int64_t lo = 0, hi = nl;
	if (ir_policy_given(s, PK_PRUNE_LAYERS)) {
		lo = pr->layers.lo;
		hi = pr->layers.hi;
		if (lo < 0 || hi > nl || lo >= hi) {
			diag_error(d, s->key_loc[PK_PRUNE_LAYERS], "layer range %lld..%lld is outside the model's %lld layers",
			           (long long)lo, (long long)hi, (long long)nl);
			return false;
		}
	}
	for (int64_t l = lo; l < hi; l++)
		ps->cand[l] = true;
	if (ir_policy_given(s, PK_PRUNE_PROTECT)) {
		for (uint32_t i = 0; i < pr->protect.n; i++)
			if (pr->protect.list[i] >= 0 && pr->protect.list[i] < nl)
				ps->cand[pr->protect.list[i]] = false;
	} else if (nl > 0) {
		ps->cand[0] = ps->cand[nl - 1] = false;
	}
	ps->multiple = ps->unit == PU_FFN ? PRUNE_DEFAULT_MULTIPLE : 1;
	if (ir_policy_given(s, PK_PRUNE_MULTIPLE)) {
		if (pr->multiple < 1) {
			diag_error(d, s->key_loc[PK_PRUNE_MULTIPLE], "multiple must be at least 1, saw %lld",
			           (long long)pr->multiple);
			return false;
		}
		ps->multiple = pr->multiple;
	}
	ps->ntokens = ir_policy_given(s, PK_PRUNE_TOKENS) ? pr->tokens : 512;
	if (ir_policy_given(s, PK_PRUNE_CALIBRATE)) {
		Loc cl = s->key_loc[PK_PRUNE_CALIBRATE];
		ps->calib = pass_resolve_path(&m->arena, cl.file ? cl.file : s->loc.file, pr->calibrate);
	}
	return true;
}

bool
pass_prune_structured(Module *m, Diag *d)
{
	if (!pass_has_stmts(m, POL_PRUNE))
		return true;
	Policy *p = m->policy;
	PassNotes pn;
	pass_notes_begin(&pn, m);
	bool ok = true, changed = false;
	for (uint32_t i = 0; i < p->nstmts && !diag_too_many(d); i++) {
		const PolicyStmt *s = &p->stmts[i];
		if (s->verb != POL_PRUNE)
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
		pass_drop_stmts(m, POL_PRUNE);
	return ok;
}
