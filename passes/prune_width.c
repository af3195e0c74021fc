/* prune_width.c - `prune ffn_neuron | head | kv_group`: narrower layers.
 *   1. find the blocks of the calibration entry (prune_groups.c) in the candidate
 *      layers; check the statement against each (keep larger than the width, keep
 *      leaving nothing, kv_group on heads that kv_heads does not divide) and that
 *      every other entry has the same blocks over the same params;
 *   2. per layer, the kept count: FFN widths round to `multiple`; `kv_group` keeps
 *      whole KV heads with all their query heads; `head` on multi-head attention is
 *      the same as kv_group, on grouped-query attention it keeps the same number of
 *      query heads in every group (so the count rounds to a multiple of kv_heads)
 *      and leaves k and v whole;
 *   3. score the units (l1, l2, maw, or act after one calibration run), keep the
 *      best, slice the params (rows of gate/up/wq/wk/wv and biases, columns of
 *      down/wo) and set the attributes in every entry (attention heads/kv_heads,
 *      rope heads, constants of the block) and the KV cache states' kv_heads. */
#include "passes/prune.h"

#include <stdlib.h>
#include <string.h>

typedef struct Target {
	int32_t layer;
	bool ffn;
	PruneFfn f;         /* when ffn */
	PruneAttn a;        /* otherwise */
	int64_t width;      /* units: neurons, kv heads (kv_group) or q heads (head) */
	int64_t keep;       /* units kept */
} Target;

static const char *
unit_name(PruneUnit u)
{
	return u == PU_FFN ? "ffn_neuron" : u == PU_HEAD ? "head" : "kv_group";
}

static bool
same_ffn(const PruneFfn *a, const PruneFfn *b)
{
	if (a->down != b->down || a->nrows != b->nrows || a->nvecs != b->nvecs)
		return false;
	for (uint32_t i = 0; i < a->nrows; i++)
		if (a->rows[i] != b->rows[i])
			return false;
	for (uint32_t i = 0; i < a->nvecs; i++)
		if (a->vecs[i] != b->vecs[i])
			return false;
	return true;
}

static bool
same_attn(const PruneAttn *a, const PruneAttn *b)
{
	return a->wq == b->wq && a->wk == b->wk && a->wv == b->wv && a->wo == b->wo && a->bq == b->bq
	       && a->bk == b->bk && a->bv == b->bv && a->heads == b->heads && a->kv_heads == b->kv_heads;
}

/* Params a target slices. */
static uint32_t
target_params(const Target *t, int32_t *out)
{
	uint32_t n = 0;
	if (t->ffn) {
		out[n++] = t->f.down;
		for (uint32_t i = 0; i < t->f.nrows; i++)
			out[n++] = t->f.rows[i];
		for (uint32_t i = 0; i < t->f.nvecs; i++)
			out[n++] = t->f.vecs[i];
	} else {
		int32_t p[7] = { t->a.wq, t->a.wk, t->a.wv, t->a.wo, t->a.bq, t->a.bk, t->a.bv };
		for (int i = 0; i < 7; i++)
			if (p[i] >= 0)
				out[n++] = p[i];
	}
	return n;
}

/* Step 1, other entries: every entry that uses a target's params has the same block. */
static bool
check_entries(Module *m, PruneStmt *ps, Diag *d, const Target *t, uint32_t nt, PruneGroups *gs)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		for (uint32_t k = 0; k < nt; k++) {
			int32_t prm[12];
			uint32_t np = target_params(&t[k], prm);
			bool uses = false, found = false;
			for (uint32_t i = 0; i < f->nops && !uses; i++)
				for (uint32_t j = 0; j < np && f->ops[i].code == OP_PARAM; j++)
					uses |= f->ops[i].ia[0] == prm[j];
			for (uint32_t g = 0; t[k].ffn && g < gs[fi].nffn; g++)
				found |= same_ffn(&gs[fi].ffn[g], &t[k].f);
			for (uint32_t g = 0; !t[k].ffn && g < gs[fi].nattn; g++)
				found |= same_attn(&gs[fi].attn[g], &t[k].a);
			if (uses && !found) {
				diag_error(d, ps->loc, "cannot prune '%s' in layer %d: entry '%s' uses its weights outside a "
				           "block the pass recognises", unit_name(ps->unit), t[k].layer, f->name);
				return false;
			}
		}
	}
	return true;
}

/* Step 3, scores of the units of one target. */
static void
score_target(const Module *m, const PruneStmt *ps, const Target *t, const PruneCalib *cal, double *sc)
{
	const Param *P = m->params;
	double *xin = NULL, *xmid = NULL;
	if (ps->score == PS_ACT && cal) {
		xin = prune_calib_norms(cal, t->ffn ? t->f.in_op : t->a.in_op);
		xmid = prune_calib_norms(cal, t->ffn ? t->f.mid_op : t->a.attn_op);
	}
	for (int64_t u = 0; u < t->width; u++) {
		PruneSpan s[8];
		uint32_t n = 0;
		if (t->ffn) {
			const PruneFfn *f = &t->f;
			if (ps->score == PS_MAW) {
				const Param *up = &P[f->up];
				s[n++] = (PruneSpan){ up->data, up->type.dims[0], up->type.dims[1], false, u, 1, NULL };
				if (f->gate >= 0) {
					const Param *g = &P[f->gate];
					s[n++] = (PruneSpan){ g->data, g->type.dims[0], g->type.dims[1], false, u, 1, NULL };
				}
			} else {
				for (uint32_t r = 0; r < f->nrows; r++) {
					const Param *w = &P[f->rows[r]];
					s[n++] = (PruneSpan){ w->data, w->type.dims[0], w->type.dims[1], false, u, 1, xin };
				}
				const Param *dn = &P[f->down];
				s[n++] = (PruneSpan){ dn->data, dn->type.dims[0], dn->type.dims[1], true, u, 1, xmid };
			}
		} else {
			const PruneAttn *a = &t->a;
			int64_t hd = a->head_dim, G = a->heads / a->kv_heads;
			/* kv_group (or head on MHA): kv head u with its G query heads; head on
			 * GQA: query head u alone */
			bool group = ps->unit == PU_KV_GROUP || a->heads == a->kv_heads;
			int64_t q0 = group ? u * G * hd : u * hd, qn = group ? G * hd : hd;
			const Param *wq = &P[a->wq], *wo = &P[a->wo];
			s[n++] = (PruneSpan){ wq->data, wq->type.dims[0], wq->type.dims[1], false, q0, qn, xin };
			s[n++] = (PruneSpan){ wo->data, wo->type.dims[0], wo->type.dims[1], true, q0, qn, xmid };
			if (group) {
				const Param *wk = &P[a->wk], *wv = &P[a->wv];
				s[n++] = (PruneSpan){ wk->data, wk->type.dims[0], wk->type.dims[1], false, u * hd, hd, xin };
				s[n++] = (PruneSpan){ wv->data, wv->type.dims[0], wv->type.dims[1], false, u * hd, hd, xin };
			}
		}
		sc[u] = prune_unit_score(s, n, ps->score);
	}
	free(xin);
	free(xmid);
}

static void
note_removed(FILE *nf, const bool *kept, int64_t n)
{
	int64_t shown = 0;
	for (int64_t u = 0; u < n; u++)
		if (!kept[u]) {
			if (shown++ == 64) {
				fputs(" ...", nf);
				break;
			}
			fprintf(nf, " %lld", (long long)u);
		}
}

/* Step 3, the cut of one target in the params and in every entry. */
static void
apply_target(Module *m, PruneStmt *ps, const Target *t, const bool *kept, PruneGroups *gs)
{
	if (t->ffn) {
		const PruneFfn *f = &t->f;
		for (uint32_t r = 0; r < f->nrows; r++)
			prune_slice_param(m, f->rows[r], false, kept, t->width, 1);
		for (uint32_t r = 0; r < f->nvecs; r++)
			prune_slice_param(m, f->vecs[r], true, kept, t->width, 1);
		prune_slice_param(m, f->down, true, kept, t->width, 1);
		for (uint32_t fi = 0; fi < m->nfuncs; fi++)
			for (uint32_t g = 0; g < gs[fi].nffn; g++) {
				const PruneFfn *h = &gs[fi].ffn[g];
				if (!same_ffn(h, f))
					continue;
				for (uint32_t c = 0; c < h->nconsts; c++) {
					Func *fn = m->funcs[fi];
					Type *ct = &fn->vals[fn->ops[h->consts[c]].dst].type;
					ct->dims[ct->rank - 1] = t->keep;
				}
			}
		fprintf(ps->notes, "prune ffn_neuron (%s): layer %d: %lld -> %lld, removed", ir_vocab_name(&ir_score_vocab, ps->score),
		        t->layer, (long long)t->width, (long long)t->keep);
		ir_add_effect(m, (PolicyEffect){ ps->s->loc, "ffn_neuron", t->layer, t->width, t->keep });
		note_removed(ps->notes, kept, t->width);
		fputc('\n', ps->notes);
		return;
	}
	const PruneAttn *a = &t->a;
	int64_t H = a->heads, KH = a->kv_heads, G = H / KH, hd = a->head_dim;
	bool group = ps->unit == PU_KV_GROUP || H == KH;
	bool *kq = xmalloc((size_t)H), *kkv = xmalloc((size_t)KH);
	for (int64_t h = 0; h < H; h++)
		kq[h] = group ? kept[h / G] : kept[h];
	int64_t nq = 0, nkv = 0;
	for (int64_t g = 0; g < KH; g++) {
		kkv[g] = !group || kept[g];
		nkv += kkv[g];
	}
	for (int64_t h = 0; h < H; h++)
		nq += kq[h];
	prune_slice_param(m, a->wq, false, kq, H, hd);
	prune_slice_param(m, a->wo, true, kq, H, hd);
	if (a->bq >= 0)
		prune_slice_param(m, a->bq, true, kq, H, hd);
	if (group) {
		prune_slice_param(m, a->wk, false, kkv, KH, hd);
		prune_slice_param(m, a->wv, false, kkv, KH, hd);
		if (a->bk >= 0)
			prune_slice_param(m, a->bk, true, kkv, KH, hd);
		if (a->bv >= 0)
			prune_slice_param(m, a->bv, true, kkv, KH, hd);
	}
	for (uint32_t fi = 0; fi < m->nfuncs; fi++)
		for (uint32_t g = 0; g < gs[fi].nattn; g++) {
			const PruneAttn *h = &gs[fi].attn[g];
			if (!same_attn(h, a))
				continue;
			Func *fn = m->funcs[fi];
			Op *at = &fn->ops[h->attn_op];
			at->ia[0] = nq;
			at->ia[1] = nkv;
			if (h->rope_q != UINT32_MAX)
				fn->ops[h->rope_q].ia[0] = nq;
			if (h->rope_k != UINT32_MAX)
				fn->ops[h->rope_k].ia[0] = nkv;
			if (at->ia[2] >= 0 && at->ia[2] < m->nstates)
				m->states[at->ia[2]].kv_heads = nkv;
		}
	fprintf(ps->notes, "prune %s (%s): layer %d: heads %lld -> %lld, kv_heads %lld -> %lld, removed heads",
	        unit_name(ps->unit), ir_vocab_name(&ir_score_vocab, ps->score), t->layer, (long long)H, (long long)nq, (long long)KH,
	        (long long)nkv);
	note_removed(ps->notes, kq, H);
	fputc('\n', ps->notes);
	ir_add_effect(m, (PolicyEffect){ ps->s->loc, "head", t->layer, H, nq });
	ir_add_effect(m, (PolicyEffect){ ps->s->loc, "kv_head", t->layer, KH, nkv });
	free(kq);
	free(kkv);
}

/* Step 2: the kept count of a target; false after reporting. */
static bool
plan_target(const Module *m, PruneStmt *ps, Diag *d, Target *t)
{
	const char *what = t->ffn ? "ffn neurons" : ps->unit == PU_HEAD ? "heads" : "kv groups";
	if (ps->keep_count && ps->keep > (double)t->width) {
		diag_error(d, ps->keep_loc, "keep %s is larger than the %lld %s of layer %d", ps->keep_text,
		           (long long)t->width, what, t->layer);
		return false;
	}
	int64_t mult = ps->multiple;
	if (!t->ffn && ps->unit == PU_HEAD && t->a.heads != t->a.kv_heads)
		mult = t->a.kv_heads * (ps->multiple > 1 ? ps->multiple : 1); /* equal heads per group */
	t->keep = prune_keep_count(ps->keep, ps->keep_count, t->width, mult);
	if (t->keep == 0) {
		diag_error(d, ps->keep_loc, "keep %s leaves none of the %lld %s of layer %d", ps->keep_text,
		           (long long)t->width, what, t->layer);
		return false;
	}
	(void)m;
	return true;
}

bool
prune_width(Module *m, PruneStmt *ps, Diag *d)
{
	Func *ref = prune_calib_entry(m);
	if (!ref)
		return true;
	PruneGroups *gs = xcalloc(m->nfuncs + 1, sizeof *gs);
	uint32_t refi = 0;
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		prune_find_groups(m, m->funcs[fi], &gs[fi]);
		if (m->funcs[fi] == ref)
			refi = fi;
	}
	Target *t = xcalloc((size_t)m->nlayers * 2 + 1, sizeof *t);
	uint32_t nt = 0;
	bool ok = true;
	/* step 1: the targets of the candidate layers */
	if (ps->unit == PU_KV_GROUP)
		for (uint32_t i = 0; i < ref->nops && ok; i++) {
			Op *o = &ref->ops[i];
			if (o->code == OP_ATTENTION && o->layer >= 0 && o->layer < m->nlayers && ps->cand[o->layer]
			    && (o->ia[1] <= 0 || o->ia[0] % o->ia[1] != 0)) {
				diag_error(d, ps->loc, "cannot prune 'kv_group' in layer %d: its %lld heads do not divide into "
				           "%lld kv heads", o->layer, (long long)o->ia[0], (long long)o->ia[1]);
				ok = false;
			}
		}
	const PruneGroups *g = &gs[refi];
	for (uint32_t k = 0; ps->unit == PU_FFN && k < g->nffn; k++)
		if (g->ffn[k].layer < m->nlayers && ps->cand[g->ffn[k].layer])
			t[nt++] = (Target){ .layer = g->ffn[k].layer, .ffn = true, .f = g->ffn[k], .width = g->ffn[k].width };
	for (uint32_t k = 0; ps->unit != PU_FFN && k < g->nattn; k++) {
		const PruneAttn *a = &g->attn[k];
		if (a->layer >= m->nlayers || !ps->cand[a->layer])
			continue;
		bool group = ps->unit == PU_KV_GROUP || a->heads == a->kv_heads;
		t[nt++] = (Target){ .layer = a->layer, .a = *a, .width = group ? a->kv_heads : a->heads };
	}
	if (ok && nt == 0) {
		diag_warning(d, ps->loc, "nothing to prune: no %s block in the chosen layers", unit_name(ps->unit));
	}
	for (uint32_t k = 0; k < nt && ok; k++)
		ok = plan_target(m, ps, d, &t[k]);
	ok = ok && check_entries(m, ps, d, t, nt, gs);
	bool cut = false;
	for (uint32_t k = 0; k < nt; k++)
		cut |= t[k].keep < t[k].width;
	PruneCalib cal = { 0 };
	bool have_cal = false;
	if (ok && cut && ps->score == PS_ACT) {
		bool *watch = xcalloc(ref->nops + 1, 1);
		for (uint32_t k = 0; k < nt; k++) {
			watch[t[k].ffn ? t[k].f.in_op : t[k].a.in_op] = true;
			watch[t[k].ffn ? t[k].f.mid_op : t[k].a.attn_op] = true;
		}
		ok = have_cal = prune_stmt_calibrate(m, ps, d, ref, watch, NULL, 0, &cal);
		free(watch);
	} else if (ok && cut) {
		ok = prune_need_data(m, d, ps->loc);
	}
	/* step 3 */
	for (uint32_t k = 0; k < nt && ok; k++) {
		if (t[k].keep >= t[k].width)
			continue;
		double *sc = xmalloc((size_t)t[k].width * sizeof *sc);
		bool *kept = xmalloc((size_t)t[k].width);
		score_target(m, ps, &t[k], have_cal ? &cal : NULL, sc);
		if (!t[k].ffn && ps->unit == PU_HEAD && t[k].a.heads != t[k].a.kv_heads) {
			/* the same number of query heads in every group */
			int64_t G = t[k].a.heads / t[k].a.kv_heads, per = t[k].keep / t[k].a.kv_heads;
			for (int64_t grp = 0; grp < t[k].a.kv_heads; grp++)
				prune_select(sc + grp * G, G, NULL, per, kept + grp * G);
		} else {
			prune_select(sc, t[k].width, NULL, t[k].keep, kept);
		}
		apply_target(m, ps, &t[k], kept, gs);
		ps->changed = true;
		free(sc);
		free(kept);
	}
	if (have_cal)
		prune_calib_free(&cal);
	for (uint32_t fi = 0; fi < m->nfuncs; fi++)
		prune_groups_free(&gs[fi]);
	free(gs);
	free(t);
	return ok;
}
