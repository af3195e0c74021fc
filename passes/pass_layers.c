/* pass_layers.c - the layer structure of a function, and removing parts of it:
 *   1. layer boundaries: the one non-leaf value entering each layer region and the
 *      one value leaving it (the residual stream);
 *   2. residual blocks of each clean layer: from the layer's input, follow the
 *      stream through the adds of the layer; the other operand of each add, with
 *      every op of the layer it is computed from (stopping at the stream value), is
 *      a block when none of those values is used outside it and it ends in a linear
 *      (attention when it holds an attention op, FFN otherwise);
 *   3. removing whole layers: forward each removed region's output to its input,
 *      drop the region's ops, the params and states of the layer, then renumber
 *      layers (ops, params, states, m->nlayers, the 'layers' constant), params
 *      (param ops) and states (attention ops), and map the layer indices of the
 *      policy statements still to come;
 *   4. removing residual blocks (attention or FFN) of layers that stay: the same
 *      forwarding and renumbering, with the params and states that only the
 *      removed ops referred to.
 * Steps 1 and 2 look at the top level of f only (ops outside if/else regions) and
 * change nothing but f's use lists.  Invariant kept by 3 and 4: the
 * module verifies after each when it did before.  Used by drop-layers and by
 * prune-structured (layer and sublayer units). */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

static uint32_t
def_of(const Func *f, ValueId v)
{
	return f->vals[v].def;
}

/* Which ops are at the top level (outside every if/else region): the straight path
 * whose layers the boundaries describe. */
static bool *
top_level(const Func *f)
{
	bool *top = xmalloc(f->nops + 1);
	int depth = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		if (f->ops[i].code == OP_END)
			depth--;
		top[i] = depth == 0 && f->ops[i].code != OP_IF;
		if (f->ops[i].code == OP_IF)
			depth++;
	}
	return top;
}

/* Step 1: the residual values entering and leaving each layer region of the top
 * level (ops in regions, such as the K/V tails of exit sites, are not looked at). */
static void
find_boundaries(const Func *f, PassLayers *g)
{
	bool *top = top_level(f);
	for (int32_t l = 0; l < g->nlayers; l++) {
		ValueId in = IR_NO_VALUE, out = IR_NO_VALUE;
		bool in_ok = true, out_ok = true, any = false;
		for (uint32_t i = 0; i < f->nops; i++) {
			const Op *o = &f->ops[i];
			if (o->layer != l || !top[i])
				continue;
			any = true;
			for (uint32_t a = 0; a < o->nargs; a++) {
				const Op *src = &f->ops[def_of(f, o->args[a])];
				if (src->layer == l || (ir_op_flags[src->code] & OPF_LEAF))
					continue;
				if (in != IR_NO_VALUE && in != o->args[a])
					in_ok = false;
				in = o->args[a];
			}
			const Value *v = &f->vals[o->dst];
			for (uint32_t u = 0; u < v->nuses; u++)
				if (f->ops[v->uses[u]].layer != l) {
					if (out != IR_NO_VALUE && out != o->dst)
						out_ok = false;
					out = o->dst;
				}
		}
		bool same = any && in != IR_NO_VALUE && out != IR_NO_VALUE
		            && ir_type_eq(f->vals[in].type, f->vals[out].type);
		g->layer_in[l] = same && in_ok && out_ok ? in : IR_NO_VALUE;
		g->layer_out[l] = same && in_ok && out_ok ? out : IR_NO_VALUE;
	}
	free(top);
}


/* Step 2 for the add op ai of layer l taking the stream value v: the block that
 * computes its other operand, or false. */
static bool
find_block(const Func *f, int32_t l, ValueId v, uint32_t ai, PassBlock *out)
{
	const Op *add = &f->ops[ai];
	ValueId w = add->args[0] == v ? add->args[1] : add->args[0];
	uint32_t wi = def_of(f, w);
	if (w == v || f->ops[wi].code != OP_LINEAR || f->ops[wi].layer != l)
		return false;
	bool *in = xcalloc(f->nops, 1);
	uint32_t *stack = xmalloc(f->nops * sizeof *stack), nstack = 0;
	PassBlock b = { .layer = l, .kind = PB_FFN, .in = v, .out = add->dst, .wout_op = wi, .state = -1 };
	b.ops = xmalloc((f->nops + 1) * sizeof *b.ops);
	in[wi] = true;
	stack[nstack++] = wi;
	uint32_t nattn = 0;
	while (nstack) {
		uint32_t oi = stack[--nstack];
		const Op *o = &f->ops[oi];
		b.ops[b.nops++] = oi;
		if (o->code == OP_ATTENTION) {
			nattn++;
			b.kind = PB_ATTN;
			b.state = (int32_t)o->ia[2];
		}
		for (uint32_t a = 0; a < o->nargs; a++) {
			uint32_t di = def_of(f, o->args[a]);
			if (o->args[a] != v && f->ops[di].layer == l && !in[di]) {
				in[di] = true;
				stack[nstack++] = di;
			}
		}
	}
	bool ok = nattn <= 1;
	for (uint32_t k = 0; k < b.nops && ok; k++) {
		const Value *val = &f->vals[f->ops[b.ops[k]].dst];
		for (uint32_t u = 0; u < val->nuses && ok; u++)
			ok = val->uses[u] == ai || in[val->uses[u]];
	}
	b.ops[b.nops++] = ai;
	free(in);
	free(stack);
	if (!ok) {
		free(b.ops);
		return false;
	}
	*out = b;
	return true;
}

/* Step 2 for layer l: walks the stream from the layer's input to its output. */
static void
find_layer_blocks(const Func *f, int32_t l, ValueId v, ValueId end, PassLayers *g, uint32_t *cap)
{
	for (uint32_t steps = 0; v != end && steps < f->nops; steps++) {
		const Value *val = &f->vals[v];
		PassBlock b;
		bool found = false;
		for (uint32_t u = 0; u < val->nuses && !found; u++) {
			uint32_t ui = val->uses[u];
			const Op *o = &f->ops[ui];
			if (o->code == OP_ADD && o->layer == l && o->nargs == 2 && (o->args[0] == v || o->args[1] == v))
				found = find_block(f, l, v, ui, &b);
		}
		if (!found)
			return;
		VEC_PUSH(g->blocks, g->nblocks, *cap);
		g->blocks[g->nblocks++] = b;
		v = b.out;
	}
}

const PassBlock *
pass_find_block(const PassLayers *g, int32_t l, PruneBlockKind k)
{
	for (uint32_t i = 0; i < g->nblocks; i++)
		if (g->blocks[i].layer == l && g->blocks[i].kind == k)
			return &g->blocks[i];
	return NULL;
}

void
pass_find_layers(Module *m, Func *f, PassLayers *g)
{
	memset(g, 0, sizeof *g);
	ir_compute_uses(m, f);
	g->nlayers = m->nlayers;
	g->layer_in = xmalloc(((size_t)m->nlayers + 1) * sizeof *g->layer_in);
	g->layer_out = xmalloc(((size_t)m->nlayers + 1) * sizeof *g->layer_out);
	find_boundaries(f, g);
	uint32_t capb = 0;
	for (int32_t l = 0; l < g->nlayers; l++)
		if (g->layer_in[l] != IR_NO_VALUE)
			find_layer_blocks(f, l, g->layer_in[l], g->layer_out[l], g, &capb);
}

void
pass_layers_free(PassLayers *g)
{
	for (uint32_t i = 0; i < g->nblocks; i++)
		free(g->blocks[i].ops);
	free(g->blocks);
	free(g->layer_in);
	free(g->layer_out);
	memset(g, 0, sizeof *g);
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

/* Maps exit sites (a site s is after the first s layers, not a layer index) to the
 * new numbering: the kept layers among the first s; sites that end up before every
 * layer or after the last one, or on a site already listed, go. */
static void
map_sites(PolicyLayers *v, const bool *kept, int32_t nold)
{
	int32_t nnew = 0;
	for (int32_t l = 0; l < nold; l++)
		nnew += kept[l];
	uint32_t n = 0;
	for (uint32_t i = 0; i < v->n; i++) {
		int32_t s = 0;
		for (int32_t l = 0; l < nold && l < v->list[i]; l++)
			s += kept[l];
		if (s >= 1 && s < nnew && (n == 0 || v->list[n - 1] != s))
			v->list[n++] = s;
	}
	v->n = n;
}

/* Every option of every statement that names layers (the layer kinds of policy.def). */
static void
map_policy(Module *m, const int32_t *newl, const bool *kept, int32_t nold)
{
	for (uint32_t s = 0; m->policy && s < m->policy->nstmts; s++) {
		PolicyStmt *st = &m->policy->stmts[s];
		for (int k = 0; k < PK_COUNT; k++) {
			PolicyKeyKind kind = ir_policy_keys[k].kind;
			PolicyLayers *v = (PolicyLayers *)((char *)st + ir_policy_keys[k].offset);
			if (!ir_policy_given(st, (PolicyKey)k))
				continue;
			if (k == PK_EXIT_AT)
				map_sites(v, kept, nold);
			else if (kind == PKK_RANGE || kind == PKK_LIST || kind == PKK_LAYERS)
				map_policy_layers(v, newl, kept, nold);
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
free_groups(Module *m, PassLayers *gs)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++)
		pass_layers_free(&gs[fi]);
	free(gs);
}

bool
pass_remove_layers(Module *m, const bool *kept, int32_t *bad_layer)
{
	int32_t nold = m->nlayers;
	/* 1. every removed layer must be a clean residual block in every function */
	PassLayers *gs = xcalloc(m->nfuncs + 1, sizeof *gs);
	bool ok = true;
	for (uint32_t fi = 0; fi < m->nfuncs && ok; fi++) {
		pass_find_layers(m, m->funcs[fi], &gs[fi]);
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
		PassLayers *g = &gs[fi];
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
mark_blocks(Module *m, const bool *gone, PassLayers *gs, bool **drop, int32_t *bad_layer, PruneBlockKind *bad_kind)
{
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		pass_find_layers(m, f, &gs[fi]);
		drop[fi] = xcalloc(f->nops + 1, 1);
		for (int32_t l = 0; l < m->nlayers; l++) {
			bool present = false;
			for (uint32_t i = 0; i < f->nops && !present; i++)
				present = f->ops[i].layer == l;
			for (int k = 0; k < PB_COUNT && present; k++) {
				if (!gone[l * PB_COUNT + k])
					continue;
				const PassBlock *b = pass_find_block(&gs[fi], l, (PruneBlockKind)k);
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
pass_remove_blocks(Module *m, const bool *gone, int32_t *bad_layer, PruneBlockKind *bad_kind)
{
	PassLayers *gs = xcalloc(m->nfuncs + 1, sizeof *gs);
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
			const PassBlock *b = &gs[fi].blocks[i];
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
