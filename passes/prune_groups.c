/* prune_groups.c - finds what structured pruning can cut in one function.
 *   1. FFN blocks: for every linear D whose weight is a param W_D[N, F], walk back
 *      from its input through elementwise ops (add, sub, mul, scale, silu, gelu,
 *      tanh) of the same layer; every path must end in a linear whose weight is a
 *      param [F, K] (a producer), a bias param [F] or a constant.  Every value on the
 *      way must be used only inside the block.  The producer that feeds an
 *      activation is the gate, the other the up projection.
 *   2. Attention blocks: for every attention op, walk back from q, k and v through
 *      rope and bias adds to their linears (params), and find the single linear
 *      (wo) that consumes the attention output.
 *   3. Layer boundaries and residual blocks: pass_find_layers (pass_layers.c).
 * Nothing is changed here except f's use lists. */
#include "passes/prune.h"

#include <stdlib.h>
#include <string.h>

int32_t
prune_linear_param(const Func *f, const Op *op)
{
	if (op->code != OP_LINEAR || op->nargs != 2 || op->args[1] >= f->nvals)
		return -1;
	const Op *w = &f->ops[f->vals[op->args[1]].def];
	return w->code == OP_PARAM ? (int32_t)w->ia[0] : -1;
}

static int64_t
lastdim(Type t)
{
	return t.rank ? t.dims[t.rank - 1] : 1;
}

static uint32_t
def_of(const Func *f, ValueId v)
{
	return f->vals[v].def;
}

static bool
is_activation(Opcode c)
{
	return c == OP_SILU || c == OP_GELU || c == OP_TANH;
}

/* Step 1 for consumer op index di.  Returns false when the block does not fit. */
static bool
find_ffn(Module *m, Func *f, uint32_t di, PruneFfn *out)
{
	Op *d = &f->ops[di];
	int32_t wd = prune_linear_param(f, d);
	if (wd < 0 || d->layer < 0 || m->params[wd].type.rank != 2)
		return false;
	int64_t F = m->params[wd].type.dims[1];
	PruneFfn g = { .layer = d->layer, .down_op = di, .down = wd, .gate = -1, .up = -1, .width = F };
	g.mid_op = def_of(f, d->args[0]);
	g.in_op = UINT32_MAX;
	bool *seen = xcalloc(f->nops, 1);
	uint32_t *stack = xmalloc(f->nops * sizeof *stack), nstack = 0;
	uint32_t *body = xmalloc(f->nops * sizeof *body), nbody = 0; /* elementwise ops of the block */
	bool ok = true;
	stack[nstack++] = g.mid_op;
	seen[g.mid_op] = true;
	while (ok && nstack) {
		uint32_t oi = stack[--nstack];
		Op *o = &f->ops[oi];
		Type t = f->vals[o->dst].type;
		if (o->layer != d->layer || t.dtype != DT_F32 || lastdim(t) != F) {
			ok = false;
			break;
		}
		int32_t p = prune_linear_param(f, o);
		if (p >= 0) {
			const Type *pt = &m->params[p].type;
			if (pt->rank != 2 || pt->dims[0] != F || g.nrows == 4) {
				ok = false;
				break;
			}
			g.rows[g.nrows++] = p;
			uint32_t in = def_of(f, o->args[0]);
			if (g.in_op == UINT32_MAX)
				g.in_op = in;
			body[nbody++] = oi;
			continue;
		}
		if (!(ir_op_flags[o->code] & OPF_ELEMWISE)) {
			ok = false;
			break;
		}
		body[nbody++] = oi;
		for (uint32_t a = 0; a < o->nargs && ok; a++) {
			uint32_t ai = def_of(f, o->args[a]);
			Op *ao = &f->ops[ai];
			if (ao->code == OP_PARAM) {
				const Type *pt = &m->params[ao->ia[0]].type;
				if (pt->rank != 1 || pt->dims[0] != F || g.nvecs == 4)
					ok = false;
				else
					g.vecs[g.nvecs++] = (int32_t)ao->ia[0];
			} else if (ao->code == OP_CONST) {
				Type ct = f->vals[ao->dst].type;
				if (ct.rank == 0)
					continue; /* a scalar splat keeps its type */
				if (lastdim(ct) != F || g.nconsts == 8)
					ok = false;
				else
					g.consts[g.nconsts++] = ai;
			} else if (!seen[ai]) {
				seen[ai] = true;
				stack[nstack++] = ai;
			}
		}
	}
	/* every value of the block is used by the block (or by D) only */
	for (uint32_t k = 0; ok && k < nbody; k++) {
		const Value *v = &f->vals[f->ops[body[k]].dst];
		for (uint32_t u = 0; u < v->nuses && ok; u++)
			ok = v->uses[u] == di || seen[v->uses[u]];
	}
	for (uint32_t k = 0; ok && k < g.nconsts; k++) {
		const Value *v = &f->vals[f->ops[g.consts[k]].dst];
		for (uint32_t u = 0; u < v->nuses && ok; u++)
			ok = seen[v->uses[u]];
	}
	ok = ok && g.nrows > 0;
	if (ok) {
		/* the gate is the producer whose value feeds an activation */
		for (uint32_t k = 0; k < nbody; k++) {
			Op *o = &f->ops[body[k]];
			int32_t p = prune_linear_param(f, o);
			if (p < 0)
				continue;
			const Value *v = &f->vals[o->dst];
			bool act = false;
			for (uint32_t u = 0; u < v->nuses; u++)
				act |= is_activation(f->ops[v->uses[u]].code);
			if (act && g.gate < 0)
				g.gate = p;
			else if (g.up < 0)
				g.up = p;
		}
		if (g.up < 0) { /* only a gate: treat it as the up projection */
			g.up = g.gate;
			g.gate = -1;
		}
		*out = g;
	}
	free(seen);
	free(stack);
	free(body);
	return ok;
}

/* Walks back from value v through rope and bias adds to a linear with a param
 * weight; records the rope and the bias. */
static int32_t
attn_input(Module *m, Func *f, ValueId v, int32_t layer, uint32_t *rope, int32_t *bias)
{
	*rope = UINT32_MAX;
	*bias = -1;
	for (int steps = 0; steps < 4; steps++) {
		Op *o = &f->ops[def_of(f, v)];
		if (o->layer != layer || f->vals[v].nuses != 1)
			return -1;
		int32_t p = prune_linear_param(f, o);
		if (p >= 0)
			return m->params[p].type.rank == 2 ? p : -1;
		if (o->code == OP_ROPE && *rope == UINT32_MAX) {
			*rope = def_of(f, v);
			v = o->args[0];
		} else if (o->code == OP_ADD && *bias < 0) {
			Op *b = &f->ops[def_of(f, o->args[1])];
			if (b->code != OP_PARAM || m->params[b->ia[0]].type.rank != 1)
				return -1;
			*bias = (int32_t)b->ia[0];
			v = o->args[0];
		} else {
			return -1;
		}
	}
	return -1;
}

/* Step 2 for the attention op ai. */
static bool
find_attn(Module *m, Func *f, uint32_t ai, PruneAttn *out)
{
	Op *a = &f->ops[ai];
	PruneAttn g = { .layer = a->layer, .attn_op = ai, .heads = a->ia[0], .kv_heads = a->ia[1] };
	uint32_t rope_v;
	if (a->layer < 0 || g.heads <= 0 || g.kv_heads <= 0 || g.heads % g.kv_heads != 0)
		return false;
	g.wq = attn_input(m, f, a->args[0], a->layer, &g.rope_q, &g.bq);
	g.wk = attn_input(m, f, a->args[1], a->layer, &g.rope_k, &g.bk);
	g.wv = attn_input(m, f, a->args[2], a->layer, &rope_v, &g.bv);
	if (g.wq < 0 || g.wk < 0 || g.wv < 0 || rope_v != UINT32_MAX)
		return false;
	const Value *av = &f->vals[a->dst];
	if (av->nuses != 1)
		return false;
	Op *o = &f->ops[av->uses[0]];
	g.wo = prune_linear_param(f, o);
	if (g.wo < 0 || o->args[0] != a->dst || o->layer != a->layer)
		return false;
	int64_t qw = m->params[g.wq].type.dims[0];
	g.head_dim = qw / g.heads;
	if (g.head_dim * g.heads != qw || m->params[g.wk].type.dims[0] != g.kv_heads * g.head_dim
	    || m->params[g.wv].type.dims[0] != g.kv_heads * g.head_dim || m->params[g.wo].type.dims[1] != qw)
		return false;
	/* the q, k and v linears share their input */
	uint32_t lq = def_of(f, g.rope_q != UINT32_MAX ? f->ops[g.rope_q].args[0] : a->args[0]);
	while (f->ops[lq].code != OP_LINEAR)
		lq = def_of(f, f->ops[lq].args[0]);
	g.in_op = def_of(f, f->ops[lq].args[0]);
	*out = g;
	return true;
}

void
prune_find_groups(Module *m, Func *f, PruneGroups *g)
{
	memset(g, 0, sizeof *g);
	ir_compute_uses(m, f);
	uint32_t capf = 0, capa = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		Op *o = &f->ops[i];
		if (o->code == OP_LINEAR) {
			PruneFfn ffn;
			if (find_ffn(m, f, i, &ffn)) {
				VEC_PUSH(g->ffn, g->nffn, capf);
				g->ffn[g->nffn++] = ffn;
			}
		} else if (o->code == OP_ATTENTION) {
			PruneAttn at;
			if (find_attn(m, f, i, &at)) {
				VEC_PUSH(g->attn, g->nattn, capa);
				g->attn[g->nattn++] = at;
			}
		}
	}
	pass_find_layers(m, f, &g->ly);
}

void
prune_groups_free(PruneGroups *g)
{
	free(g->ffn);
	free(g->attn);
	pass_layers_free(&g->ly);
	memset(g, 0, sizeof *g);
}
