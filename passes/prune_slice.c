/* prune_slice.c - the mechanics of structured pruning, independent of scores:
 *   1. slicing one param: keep blocks of rows or columns (data, type, hash);
 *   2. removing whole layers: forward each removed region's output to its input,
 *      drop the region's ops, the params and states of the layer, then renumber
 *      layers (ops, params, states, m->nlayers, the 'layers' constant), params
 *      (param ops) and states (attention ops), and map the layer indices of the
 *      policy statements still to come;
 *   3. retyping every value after the shapes changed (ir_infer_type in op order);
 *   4. removing residual blocks (attention or FFN) of layers that stay: the same
 *      forwarding and renumbering, with the params and states that only the
 *      removed ops referred to.
 * Invariant kept: the module verifies after each of these when it did before and
 * the caller changed attributes consistently (heads, kv_heads, states). */
#include "passes/prune.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

void
prune_slice_param(Module *m, int32_t pi, bool cols, const bool *kept, int64_t nunits, int64_t block)
{
	Param *p = &m->params[pi];
	Type t = p->type;
	int64_t rows = t.rank == 2 ? t.dims[0] : 1, ncols = t.rank == 2 ? t.dims[1] : t.dims[0];
	if (t.rank == 1)
		cols = true;
	int64_t nk = 0;
	for (int64_t u = 0; u < nunits; u++)
		nk += kept[u];
	int64_t nrows = cols ? rows : nk * block, ncols2 = cols ? nk * block : ncols;
	if (p->data) {
		float *d = xmalloc((size_t)(nrows * ncols2 > 0 ? nrows * ncols2 : 1) * sizeof *d);
		int64_t o = 0;
		for (int64_t r = 0; r < rows; r++) {
			if (!cols && !kept[r / block])
				continue;
			for (int64_t c = 0; c < ncols; c++)
				if (!cols || kept[c / block])
					d[o++] = p->data[r * ncols + c];
		}
		free(p->data);
		p->data = d;
		p->hash = ir_hash_bytes(d, (size_t)o * sizeof *d, 0);
	}
	if (t.rank == 2) {
		p->type.dims[0] = nrows;
		p->type.dims[1] = ncols2;
	} else {
		p->type.dims[0] = ncols2;
	}
}

/* Maps one set of layer indices of a policy statement to the new numbering. */
static void
map_policy_layers(PolicyLayers *v, const int32_t *newl, const bool *kept, int32_t nold)
{
	if (v->range) {
		int32_t lo = 0, hi = 0;
		for (int32_t l = 0; l < nold; l++) {
			lo += kept[l] && l < v->lo;
			hi += kept[l] && l < v->hi;
		}
		v->lo = lo;
		v->hi = hi;
	} else {
		uint32_t n = 0;
		for (uint32_t i = 0; i < v->n; i++)
			if (v->list[i] >= 0 && v->list[i] < nold && kept[v->list[i]])
				v->list[n++] = newl[v->list[i]];
		v->n = n;
	}
}

/* Every option of every statement that names layers (the layer kinds of policy.def). */
static void
map_policy(Module *m, const int32_t *newl, const bool *kept, int32_t nold)
{
	for (uint32_t s = 0; m->policy && s < m->policy->nstmts; s++) {
		PolicyStmt *st = &m->policy->stmts[s];
		for (int k = 0; k < PK_COUNT; k++) {
			PolicyKeyKind kind = ir_policy_keys[k].kind;
			if (ir_policy_given(st, (PolicyKey)k) && (kind == PKK_RANGE || kind == PKK_LIST || kind == PKK_LAYERS))
				map_policy_layers((PolicyLayers *)((char *)st + ir_policy_keys[k].offset), newl, kept, nold);
		}
	}
}

/* Drops the params with !pkeep[i] (their data freed) and the states with
 * !skeep[i]; newp and news receive the new index of each, -1 for the gone. */
static void
compact(Module *m, const bool *pkeep, const bool *skeep, int32_t *newp, int32_t *news)
{
	uint32_t np = 0, ns = 0;
	for (uint32_t i = 0; i < m->nparams; i++) {
		newp[i] = pkeep[i] ? (int32_t)np : -1;
		if (pkeep[i])
			m->params[np++] = m->params[i];
		else
			free(m->params[i].data);
	}
	m->nparams = np;
	for (uint32_t i = 0; i < m->nstates; i++) {
		news[i] = skeep[i] ? (int32_t)ns : -1;
		if (skeep[i])
			m->states[ns++] = m->states[i];
	}
	m->nstates = ns;
}

/* Rebuilds f without the ops of !keep[i] and the param ops of gone params,
 * forwarding per repl, with the param and state indices of the rest renumbered
 * (newp over the npold params before compact). */
static void
rebuild(Module *m, Func *f, bool *keep, const ValueId *repl, const int32_t *newp, uint32_t npold,
        const int32_t *news)
{
	for (uint32_t i = 0; i < f->nops; i++) {
		Op *o = &f->ops[i];
		if (o->code == OP_PARAM && o->ia[0] >= 0 && o->ia[0] < (int64_t)npold && newp[o->ia[0]] < 0)
			keep[i] = false;
		if (!keep[i])
			continue;
		if (o->code == OP_PARAM)
			o->ia[0] = newp[o->ia[0]];
		if (o->code == OP_ATTENTION && o->ia[2] >= 0)
			o->ia[2] = news[o->ia[2]];
	}
	pass_rebuild_func(m, f, keep, repl);
}

static void
free_groups(Module *m, PruneGroups *gs)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++)
		prune_groups_free(&gs[fi]);
	free(gs);
}

bool
prune_remove_layers(Module *m, const bool *kept, int32_t *bad_layer)
{
	int32_t nold = m->nlayers;
	/* 1. every removed layer must be a clean residual block in every function */
	PruneGroups *gs = xcalloc(m->nfuncs + 1, sizeof *gs);
	bool ok = true;
	for (uint32_t fi = 0; fi < m->nfuncs && ok; fi++) {
		prune_find_groups(m, m->funcs[fi], &gs[fi]);
		for (int32_t l = 0; l < nold && ok; l++) {
			bool present = false;
			for (uint32_t i = 0; i < m->funcs[fi]->nops && !present; i++)
				present = m->funcs[fi]->ops[i].layer == l;
			if (!kept[l] && present && gs[fi].layer_out[l] == IR_NO_VALUE) {
				*bad_layer = l;
				ok = false;
			}
		}
	}
	if (!ok) {
		free_groups(m, gs);
		return false;
	}
	int32_t *newl = xmalloc(((size_t)nold + 1) * sizeof *newl);
	int32_t nnew = 0;
	for (int32_t l = 0; l < nold; l++)
		newl[l] = kept[l] ? nnew++ : -1;
	/* 2. params and states of the removed layers go; the others are renumbered */
	uint32_t npold = m->nparams;
	int32_t *newp = xmalloc(((size_t)npold + 1) * sizeof *newp);
	int32_t *news = xmalloc(((size_t)m->nstates + 1) * sizeof *news);
	bool *pkeep = xmalloc((size_t)npold + 1), *skeep = xmalloc((size_t)m->nstates + 1);
	for (uint32_t i = 0; i < npold; i++) {
		Param *p = &m->params[i];
		pkeep[i] = p->layer < 0 || p->layer >= nold || kept[p->layer];
		if (pkeep[i] && p->layer >= 0 && p->layer < nold)
			p->layer = newl[p->layer];
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		State *s = &m->states[i];
		skeep[i] = s->layer < 0 || s->layer >= nold || kept[s->layer];
		if (skeep[i] && s->layer >= 0 && s->layer < nold)
			s->layer = newl[s->layer];
	}
	compact(m, pkeep, skeep, newp, news);
	/* 3. each function: forward, drop, renumber */
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		PruneGroups *g = &gs[fi];
		ValueId *repl = xmalloc((f->nvals + 1) * sizeof *repl);
		bool *keep = xmalloc(f->nops + 1);
		for (uint32_t v = 0; v < f->nvals; v++)
			repl[v] = IR_NO_VALUE;
		for (int32_t l = 0; l < nold; l++)
			if (!kept[l] && g->layer_out[l] != IR_NO_VALUE)
				repl[g->layer_out[l]] = g->layer_in[l];
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *o = &f->ops[i];
			keep[i] = o->layer < 0 || o->layer >= nold || kept[o->layer];
			if (keep[i] && o->layer >= 0 && o->layer < nold)
				o->layer = newl[o->layer];
		}
		rebuild(m, f, keep, repl, newp, npold, news);
		free(repl);
		free(keep);
	}
	free_groups(m, gs);
	map_policy(m, newl, kept, nold);
	m->nlayers = nnew;
	for (uint32_t i = 0; i < m->config.n; i++)
		if (strcmp(m->config.names[i], "layers") == 0)
			m->config.values[i] = nnew;
	free(newl);
	free(newp);
	free(news);
	free(pkeep);
	free(skeep);
	return true;
}

/* Step 4, check: every function holding ops of a layer that loses a block has that
 * block; marks the block's ops in drop[fi][i]. */
static bool
mark_blocks(Module *m, const bool *gone, PruneGroups *gs, bool **drop, int32_t *bad_layer, PruneBlockKind *bad_kind)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		prune_find_groups(m, f, &gs[fi]);
		drop[fi] = xcalloc(f->nops + 1, 1);
		for (int32_t l = 0; l < m->nlayers; l++) {
			bool present = false;
			for (uint32_t i = 0; i < f->nops && !present; i++)
				present = f->ops[i].layer == l;
			for (int k = 0; k < PB_COUNT && present; k++) {
				if (!gone[l * PB_COUNT + k])
					continue;
				const PruneBlock *b = prune_find_block(&gs[fi], l, (PruneBlockKind)k);
				if (!b) {
					*bad_layer = l;
					*bad_kind = (PruneBlockKind)k;
					return false;
				}
				for (uint32_t j = 0; j < b->nops; j++)
					drop[fi][b->ops[j]] = true;
			}
		}
	}
	return true;
}

bool
prune_remove_blocks(Module *m, const bool *gone, int32_t *bad_layer, PruneBlockKind *bad_kind)
{
	PruneGroups *gs = xcalloc(m->nfuncs + 1, sizeof *gs);
	bool **drop = xcalloc(m->nfuncs + 1, sizeof *drop);
	bool ok = mark_blocks(m, gone, gs, drop, bad_layer, bad_kind);
	uint32_t npold = m->nparams;
	int32_t *newp = xmalloc(((size_t)npold + 1) * sizeof *newp);
	int32_t *news = xmalloc(((size_t)m->nstates + 1) * sizeof *news);
	bool *pkeep = xcalloc((size_t)npold + 1, 1), *skeep = xcalloc((size_t)m->nstates + 1, 1);
	/* a param or state stays when an op left refers to it, or none ever did */
	bool *pref = xcalloc((size_t)npold + 1, 1), *sref = xcalloc((size_t)m->nstates + 1, 1);
	for (uint32_t fi = 0; fi < m->nfuncs && ok; fi++) {
		const Func *f = m->funcs[fi];
		for (uint32_t i = 0; i < f->nops; i++) {
			const Op *o = &f->ops[i];
			bool *ref = o->code == OP_PARAM ? pref : o->code == OP_ATTENTION ? sref : NULL;
			bool *keep = o->code == OP_PARAM ? pkeep : skeep;
			int64_t k = o->code == OP_PARAM ? o->ia[0] : o->ia[2];
			int64_t n = o->code == OP_PARAM ? npold : m->nstates;
			if (!ref || k < 0 || k >= n)
				continue;
			ref[k] = true;
			keep[k] |= !drop[fi][i];
		}
	}
	for (uint32_t i = 0; i < npold; i++)
		pkeep[i] |= !pref[i];
	for (uint32_t i = 0; i < m->nstates; i++)
		skeep[i] |= !sref[i];
	if (ok)
		compact(m, pkeep, skeep, newp, news);
	for (uint32_t fi = 0; fi < m->nfuncs && ok; fi++) {
		Func *f = m->funcs[fi];
		ValueId *repl = xmalloc((f->nvals + 1) * sizeof *repl);
		bool *keep = xmalloc(f->nops + 1);
		for (uint32_t v = 0; v < f->nvals; v++)
			repl[v] = IR_NO_VALUE;
		for (uint32_t i = 0; i < gs[fi].nblocks; i++) {
			const PruneBlock *b = &gs[fi].blocks[i];
			if (drop[fi][b->ops[b->nops - 1]])
				repl[b->out] = b->in;
		}
		for (uint32_t i = 0; i < f->nops; i++)
			keep[i] = !drop[fi][i];
		rebuild(m, f, keep, repl, newp, npold, news);
		free(repl);
		free(keep);
	}
	for (uint32_t fi = 0; fi < m->nfuncs; fi++)
		free(drop[fi]);
	free(drop);
	free_groups(m, gs);
	free(newp);
	free(news);
	free(pkeep);
	free(skeep);
	free(pref);
	free(sref);
	return ok;
}

bool
prune_retype(Module *m, char *err, size_t nerr)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *o = &f->ops[i];
			Type t;
			if (o->code == OP_CONST)
				continue;
			if (!ir_infer_type(m, f, o, &t, err, nerr))
				return false;
			f->vals[o->dst].type = t;
		}
	}
	return true;
}

void
prune_notes_begin(PruneNotes *pn, const Module *m)
{
	memset(pn, 0, sizeof *pn);
	pn->f = open_memstream(&pn->text, &pn->len);
	if (!pn->f)
		ELIDE_ICE("open_memstream failed");
	pn->params = prune_param_count(m);
	pn->layers = m->nlayers;
}

void
prune_notes_end(PruneNotes *pn, Module *m, const char *pass, bool changed, bool ok)
{
	if (ok && changed) {
		int64_t after = prune_param_count(m);
		fprintf(pn->f, "%s: params %lld -> %lld (removed %lld), layers %d -> %d\n", pass, (long long)pn->params,
		        (long long)after, (long long)(pn->params - after), pn->layers, m->nlayers);
	}
	fclose(pn->f);
	if (ok && changed)
		pass_add_notes(m, pn->text);
	free(pn->text);
}

int64_t
prune_param_count(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nparams; i++)
		n += ir_type_numel(m->params[i].type);
	return n;
}
