/* prune_sublayer.c - `prune sublayer keep K [block attention|ffn] score bi | angular |
 * l1 | l2`: fewer residual blocks, every layer kept.
 *   1. find the residual blocks (pass_layers.c) of the calibration entry; the
 *      candidates are the blocks of the kind `block` names (both kinds when absent)
 *      in the candidate layers (the `layers` range less the protected layers);
 *      `keep` counts the candidates kept (a fraction of them, or a count that must
 *      not exceed them);
 *   2. score every block: bi = 1 - mean cos(x_in, x_out) and angular = mean
 *      arccos(cos(x_in, x_out)) / pi over every calibration token, x_in and x_out
 *      being the residual stream before and after the block (one interpreter run,
 *      prune_calib.c); l1 / l2 = magnitude of the block's output projection
 *      (o_proj, down_proj): the block adds W_out h to the stream, so that weight
 *      bounds what it contributes, and a block whose W_out is zero adds nothing
 *      (all of a block's weights would rank attention below FFN by size alone);
 *   3. the lowest scores go.  A layer may not lose both blocks: that is the whole
 *      layer, which `prune layer` and `drop layers` remove with its numbering (an
 *      error names the layer; this unit never renumbers layers);
 *   4. remove the blocks in every entry (pass_remove_blocks, pass_layers.c): the attention block takes
 *      its norm, q/k/v/o projections, biases and the layer's KV cache along, the
 *      FFN block its norm and gate/up/down; note what went with every score. */
#include "passes/prune.h"

#include <stdlib.h>
#include <string.h>

/* Step 2 for bi and angular: the stream around every block of ref. */
static bool
block_states(Module *m, PruneStmt *ps, Diag *d, const Func *ref, const PruneGroups *g, PruneCalib *cal)
{
	uint32_t *ops = xmalloc((2 * (size_t)g->ly.nblocks + 1) * sizeof *ops);
	for (uint32_t i = 0; i < g->ly.nblocks; i++) {
		ops[2 * i] = ref->vals[g->ly.blocks[i].in].def;
		ops[2 * i + 1] = ref->vals[g->ly.blocks[i].out].def;
	}
	bool ok = prune_stmt_calibrate(m, ps, d, ref, NULL, ops, 2 * g->ly.nblocks, cal);
	free(ops);
	return ok;
}

/* Step 2 for l1 and l2: the output projection's weights. */
static double
weight_score(const Module *m, const Func *ref, const PassBlock *b, PruneScore sc)
{
	int32_t p = prune_linear_param(ref, &ref->ops[b->wout_op]);
	if (p < 0)
		return 0;
	const Param *w = &m->params[p];
	int64_t rows = w->type.rank == 2 ? w->type.dims[0] : 1;
	PruneSpan s = { w->data, rows, w->type.dims[w->type.rank - 1], false, 0, rows, NULL };
	return prune_unit_score(&s, 1, sc);
}

/* Step 4's note: "prune sublayer (bi): 6 -> 4 blocks, removed attention 2, ffn 1
 * (scores attention - 0.1 ... -, ffn ...)", '-' where a layer has no such block. */
static void
note(PruneStmt *ps, int32_t L, int64_t nblocks, int64_t ngone, const bool *gone, const double *sc,
     const bool *have)
{
	fprintf(ps->notes, "prune sublayer (%s): %lld -> %lld blocks, removed", ir_vocab_name(&ir_score_vocab, ps->score),
	        (long long)nblocks, (long long)(nblocks - ngone));
	for (int k = 0; k < PB_COUNT; k++) {
		bool any = false;
		for (int32_t l = 0; l < L; l++)
			if (gone[l * PB_COUNT + k]) {
				if (!any)
					fprintf(ps->notes, " %s", ir_vocab_name(&ir_block_vocab, k));
				fprintf(ps->notes, " %d", l);
				any = true;
			}
	}
	fputs(" (scores", ps->notes);
	for (int k = 0; k < PB_COUNT; k++) {
		fprintf(ps->notes, "%s %s", k ? "," : "", ir_vocab_name(&ir_block_vocab, k));
		for (int32_t l = 0; l < L; l++)
			if (have[l * PB_COUNT + k])
				fprintf(ps->notes, " %.4f", sc[l * PB_COUNT + k]);
			else
				fputs(" -", ps->notes);
	}
	fputs(")\n", ps->notes);
}

/* Step 1: the candidates (cand[l * PB_COUNT + k]) and how many stay; false after
 * reporting. */
static bool
plan(PruneStmt *ps, Diag *d, const PruneGroups *g, bool *cand, int64_t *ncand, int64_t *keep)
{
	*ncand = 0;
	for (uint32_t i = 0; i < g->ly.nblocks; i++) {
		const PassBlock *b = &g->ly.blocks[i];
		if (ps->cand[b->layer] && (ps->block < 0 || ps->block == (int)b->kind)) {
			cand[b->layer * PB_COUNT + b->kind] = true;
			++*ncand;
		}
	}
	const char *what = ps->block < 0 ? "" : ps->block == PB_ATTN ? " attention" : " ffn";
	if (ps->keep_count && ps->keep > (double)*ncand) {
		diag_error(d, ps->keep_loc, "keep %s is larger than the %lld candidate%s blocks (the range less the "
		           "protected layers)", ps->keep_text, (long long)*ncand, what);
		return false;
	}
	*keep = prune_keep_count(ps->keep, ps->keep_count, *ncand, 1);
	if (*keep == 0) {
		diag_error(d, ps->keep_loc, "keep %s leaves none of the %lld candidate%s blocks", ps->keep_text,
		           (long long)*ncand, what);
		return false;
	}
	return true;
}

/* Step 3: the lowest-scoring candidates go (gone[]); false after reporting when a
 * layer would lose both blocks. */
static bool
select_gone(PruneStmt *ps, Diag *d, int32_t L, const bool *cand, int64_t keep, const double *sc, bool *gone)
{
	size_t n = (size_t)L * PB_COUNT;
	bool *kept = xmalloc(n + 1);
	prune_select(sc, (int64_t)n, cand, keep, kept);
	for (size_t i = 0; i < n; i++)
		gone[i] = !kept[i];
	free(kept);
	for (int32_t l = 0; l < L; l++)
		if (gone[l * PB_COUNT + PB_ATTN] && gone[l * PB_COUNT + PB_FFN]) {
			diag_error(d, ps->keep_loc, "keep %s removes both blocks of layer %d; remove the whole layer with "
			           "'prune layer' or 'drop layers'", ps->keep_text, l);
			return false;
		}
	return true;
}

bool
prune_sublayers(Module *m, PruneStmt *ps, Diag *d)
{
	Func *ref = prune_calib_entry(m);
	if (!ref) {
		diag_error(d, ps->loc, "cannot score sublayers: the model has no entry to calibrate with");
		return false;
	}
	PruneGroups g;
	prune_find_groups(m, ref, &g);
	int32_t L = m->nlayers;
	size_t n = (size_t)L * PB_COUNT;
	double *sc = xcalloc(n + 1, sizeof *sc);
	bool *have = xcalloc(n + 1, 1), *gone = xcalloc(n + 1, 1), *cand = xcalloc(n + 1, 1);
	int64_t ncand = 0, keep = 0, ngone = 0;
	bool ok = plan(ps, d, &g, cand, &ncand, &keep);
	bool cut = ok && keep < ncand;
	if (cut && (ps->score == PS_BI || ps->score == PS_ANGULAR)) {
		PruneCalib cal;
		ok = block_states(m, ps, d, ref, &g, &cal);
		for (uint32_t i = 0; ok && i < g.ly.nblocks; i++) {
			const float *a = cal.states[2 * i], *b = cal.states[2 * i + 1];
			double v = ps->score == PS_BI ? prune_bi(a, b, cal.rows, cal.dim)
			                              : prune_angular(a, b, cal.rows, cal.dim);
			sc[g.ly.blocks[i].layer * PB_COUNT + g.ly.blocks[i].kind] = v;
		}
		if (ok)
			prune_calib_free(&cal);
	} else if (cut) {
		ok = prune_need_data(m, d, ps->loc);
		for (uint32_t i = 0; ok && i < g.ly.nblocks; i++)
			sc[g.ly.blocks[i].layer * PB_COUNT + g.ly.blocks[i].kind] = weight_score(m, ref, &g.ly.blocks[i], ps->score);
	}
	for (uint32_t i = 0; i < g.ly.nblocks; i++)
		have[g.ly.blocks[i].layer * PB_COUNT + g.ly.blocks[i].kind] = true;
	ok = ok && (!cut || select_gone(ps, d, L, cand, keep, sc, gone));
	for (size_t i = 0; i < n; i++)
		ngone += gone[i];
	int32_t bad = -1;
	PruneBlockKind badk = PB_ATTN;
	if (ok && ngone > 0 && !pass_remove_blocks(m, gone, &bad, &badk)) {
		diag_error(d, ps->loc, "cannot remove the %s block of layer %d: it is not one residual block in every entry",
		           ir_vocab_name(&ir_block_vocab, badk), bad);
		ok = false;
	}
	if (ok && ngone > 0) {
		static const char *const what[PB_COUNT] = { "attention_block", "ffn_block" };
		note(ps, L, (int64_t)g.ly.nblocks, ngone, gone, sc, have);
		for (int32_t l = 0; l < L; l++)
			for (int k = 0; k < PB_COUNT; k++)
				if (gone[l * PB_COUNT + k])
					ir_add_effect(m, (PolicyEffect){ ps->s->loc, what[k], l, 1, 0 });
		ps->changed = true;
	}
	prune_groups_free(&g);
	free(sc);
	free(have);
	free(gone);
	free(cand);
	return ok;
}
