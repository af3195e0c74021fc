/* prune_layers.c - `prune layer keep K score angular | bi | l1 | l2`: fewer layers.
 *   1. n = layers - kept; check that something stays, that n candidate layers exist
 *      (the `layers` range minus the protected layers) and that every layer is one
 *      residual block (one value in, one value out) in the calibration entry;
 *   2. score: angular (Gromov et al.) runs the calibration tokens through the
 *      interpreter, takes every token's hidden state x_l entering each layer (and
 *      x_L leaving the last), and removes the block of n consecutive candidate
 *      layers [s, s+n) with the smallest mean over ALL calibration tokens of
 *      arccos(cos(x_s, x_{s+n})) / pi (the paper uses the last token of each
 *      sequence; with a few short calibration chunks every token gives a steadier
 *      estimate); bi (ShortGPT) removes the n candidates of lowest
 *      1 - mean cos(x_l, x_{l+1}), over all tokens too; l1 / l2 remove the layers
 *      whose params have the smallest magnitude;
 *   3. remove the layers (pass_remove_layers, pass_layers.c) and note which went with their scores. */
#include "passes/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Step 2 for angular and bi: hidden states at the layer boundaries. */
static bool
layer_states(Module *m, PruneStmt *ps, Diag *d, PruneCalib *cal)
{
	Func *ref = prune_calib_entry(m);
	if (!ref) {
		diag_error(d, ps->loc, "cannot score layers: the model has no entry to calibrate with");
		return false;
	}
	PruneGroups g;
	prune_find_groups(m, ref, &g);
	int32_t L = m->nlayers;
	uint32_t *ops = xmalloc(((size_t)L + 1) * sizeof *ops);
	bool ok = true;
	for (int32_t l = 0; l < L && ok; l++) {
		if (g.ly.layer_in[l] == IR_NO_VALUE || g.ly.layer_out[l] == IR_NO_VALUE) {
			diag_error(d, ps->loc, "cannot score layer %d of entry '%s': it is not one residual block", l,
			           ref->name);
			ok = false;
			break;
		}
		if (l == 0)
			ops[0] = ref->vals[g.ly.layer_in[0]].def;
		ops[l + 1] = ref->vals[g.ly.layer_out[l]].def;
	}
	prune_groups_free(&g);
	ok = ok && prune_stmt_calibrate(m, ps, d, ref, NULL, ops, (uint32_t)L + 1, cal);
	free(ops);
	return ok;
}

bool
prune_layers(Module *m, PruneStmt *ps, Diag *d)
{
	int32_t L = m->nlayers;
	if (ps->keep_count && ps->keep > L) {
		diag_error(d, ps->keep_loc, "keep %s layers, but the model has %d", ps->keep_text, L);
		return false;
	}
	int64_t keep = prune_keep_count(ps->keep, ps->keep_count, L, 1);
	if (keep == 0) {
		diag_error(d, ps->keep_loc, "keep %s of %d layers prunes every layer", ps->keep_text, L);
		return false;
	}
	int64_t n = L - keep, ncand = 0;
	for (int32_t l = 0; l < L; l++)
		ncand += ps->cand[l];
	if (n == 0)
		return true;
	if (ncand < n) {
		diag_error(d, ps->keep_loc, "keep %s removes %lld of %d layers, but only %lld may be removed (the range "
		           "less the protected layers)", ps->keep_text, (long long)n, L, (long long)ncand);
		return false;
	}
	double *sc = xcalloc((size_t)L + 1, sizeof *sc);
	bool *kept = xmalloc((size_t)L + 1);
	for (int32_t l = 0; l < L; l++)
		kept[l] = true;
	bool ok = true;
	if (ps->score == PS_ANGULAR || ps->score == PS_BI) {
		PruneCalib cal;
		if (!layer_states(m, ps, d, &cal)) {
			free(sc);
			free(kept);
			return false;
		}
		if (ps->score == PS_ANGULAR) {
			for (int64_t s = 0; s + n <= L; s++)
				sc[s] = prune_angular(cal.states[s], cal.states[s + n], cal.rows, cal.dim);
			int64_t s = prune_best_block(sc, L, ps->cand, n);
			if (s < 0) {
				diag_error(d, ps->keep_loc, "no %lld consecutive layers may be removed (the range less the "
				           "protected layers)", (long long)n);
				ok = false;
			}
			for (int64_t k = s; ok && k < s + n; k++)
				kept[k] = false;
		} else {
			for (int32_t l = 0; l < L; l++)
				sc[l] = prune_bi(cal.states[l], cal.states[l + 1], cal.rows, cal.dim);
			prune_select(sc, L, ps->cand, ncand - n, kept);
		}
		prune_calib_free(&cal);
	} else {
		if (!prune_need_data(m, d, ps->loc)) {
			free(sc);
			free(kept);
			return false;
		}
		for (uint32_t i = 0; i < m->nparams; i++) {
			const Param *p = &m->params[i];
			if (p->layer < 0 || p->layer >= L)
				continue;
			PruneSpan s = { p->data, p->type.rank == 2 ? p->type.dims[0] : 1, p->type.dims[p->type.rank - 1],
			                false, 0, p->type.rank == 2 ? p->type.dims[0] : 1, NULL };
			double v = prune_unit_score(&s, 1, ps->score == PS_L1 ? PS_L1 : PS_L2);
			sc[p->layer] += ps->score == PS_L1 ? v : v * v;
		}
		prune_select(sc, L, ps->cand, ncand - n, kept);
	}
	if (ok) {
		int32_t bad = -1;
		if (!pass_remove_layers(m, kept, &bad)) {
			diag_error(d, ps->loc, "cannot remove layer %d: it is not one residual block in every entry", bad);
			ok = false;
		}
	}
	if (ok) {
		fprintf(ps->notes, "prune layer (%s): %d -> %d layers, removed", ir_vocab_name(&ir_score_vocab, ps->score), L, m->nlayers);
		for (int32_t l = 0; l < L; l++)
			if (!kept[l]) {
				fprintf(ps->notes, " %d", l);
				ir_add_effect(m, (PolicyEffect){ ps->s->loc, "layer", l, 1, 0 });
			}
		fputs(" (scores", ps->notes);
		int64_t nsc = ps->score == PS_ANGULAR ? L - n + 1 : L;
		for (int64_t l = 0; l < nsc; l++)
			fprintf(ps->notes, " %.4f", sc[l]);
		fputs(")\n", ps->notes);
		ps->changed = true;
	}
	free(sc);
	free(kept);
	return ok;
}
